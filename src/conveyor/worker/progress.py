"""`ctx.progress(...)` in a worker (docs/control.md): the report is encoded with the app's
codec and stored by `Backend.set_progress`, fenced by the delivery's lease token (so a zombie
cannot write), from whichever process runs the task (a process-pool child through its own
connection). Every call is one write; nothing is coalesced."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..backends.base import Delivery

if TYPE_CHECKING:
    from ..app import Conveyor

log = logging.getLogger("conveyor.worker")

EAGER_TOKEN = "eager"  # eager mode's deliveries (executor.run_inline): nothing to store


class ProgressReport:
    """`ctx.progress` of one delivery: encode (a value the serializer refuses raises
    `SerializationError` in the task, as `delay()` would) and store, fenced by the token. A
    backend failure is logged and reported as False: progress never fails a task."""

    __slots__ = ("app", "id", "token")

    def __init__(self, app: Conveyor, d: Delivery) -> None:
        self.app, self.id, self.token = app, d.id, d.token

    def __call__(self, report: dict[str, Any]) -> bool:
        data = self.app.codec.encode(report)
        try:
            return self.app.backend.set_progress(self.id, self.token, data,
                                                 self.app.clock.now())
        except Exception as exc:
            log.warning("task %s: progress not stored: %s", self.id, exc)
            return False


def progress_reporter(app: Conveyor, d: Delivery) -> ProgressReport | None:
    return None if d.token == EAGER_TOKEN else ProgressReport(app, d)

