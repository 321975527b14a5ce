"""Apply new settings to an existing Conveyor, keeping the tasks declared on it.

Framework integrations create their Conveyor before the framework's settings are known (a
Flask app factory, Django's `override_settings`), while tasks are declared on it at import
time and keep a reference to it. `Conveyor.__init__` does no I/O, so running it again on the
same object with the new settings is cheap; the registries are carried over and the old
backend is closed.
"""

from __future__ import annotations

import logging
from typing import Any

from ..app import Conveyor

log = logging.getLogger("conveyor.contrib")


def reconfigure(app: Conveyor, url: str | None, **settings: Any) -> None:
    tasks, periodic = dict(app.tasks), dict(app.periodic_tasks)
    old_backend = app.backend
    settings.setdefault("clock", app.clock)
    Conveyor.__init__(app, url, **settings)
    app.tasks.update(tasks)
    app.periodic_tasks.update(periodic)
    try:
        old_backend.close()
    except Exception as exc:  # it may never have connected
        log.debug("closing the previous backend of %r: %s", app, exc)
