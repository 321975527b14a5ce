"""Flask: settings from `app.config`, and tasks that run inside the Flask app context.

::

    from flask import Flask
    from conveyor.contrib.flask import FlaskConveyor

    conveyor = FlaskConveyor()          # tasks can be declared before the Flask app exists

    @conveyor.task
    def send_welcome(user_id):
        user = db.session.get(User, user_id)    # current_app, extensions, config: all there
        ...

    def create_app():
        app = Flask(__name__)
        app.config["CONVEYOR_URL"] = "redis://localhost:6379/0"
        conveyor.init_app(app)
        return app

The worker needs the Flask app too: point it at a module that creates it, e.g. `wsgi.py` with
`app = create_app()` and `conveyor = app.extensions["conveyor"]`, then
`conveyor worker wsgi:conveyor`.

Settings read from `app.config` by `init_app` (each optional; keyword arguments given to
`FlaskConveyor(...)` come first, then the config, then conveyor's defaults):
`CONVEYOR_URL`, `CONVEYOR_DEFAULT_QUEUE`, `CONVEYOR_RESULT_TTL`, `CONVEYOR_SERIALIZER`,
`CONVEYOR_SECRET_KEY`, `CONVEYOR_LEASE`, `CONVEYOR_EAGER` (handy in tests: `.delay()` runs
the task inline, inside the app context).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..app import Conveyor
from ..errors import ConfigError
from ..middleware import ExecuteCall, Middleware

if TYPE_CHECKING:
    from flask import Flask  # type: ignore[import-not-found,unused-ignore]

__all__ = ["CONFIG_KEYS", "FlaskConveyor"]

#: `app.config` key -> `Conveyor(...)` keyword.
CONFIG_KEYS = {
    "CONVEYOR_URL": "url",
    "CONVEYOR_DEFAULT_QUEUE": "default_queue",
    "CONVEYOR_RESULT_TTL": "result_ttl",
    "CONVEYOR_SERIALIZER": "serializer",
    "CONVEYOR_SECRET_KEY": "secret_key",
    "CONVEYOR_LEASE": "lease",
    "CONVEYOR_EAGER": "eager",
    "CONVEYOR_MAX_MESSAGE_SIZE": "max_message_size",
}


class AppContext(Middleware):
    """Runs each task inside the Flask app context of the extension's app (if bound)."""

    def __init__(self, owner: FlaskConveyor) -> None:
        self.owner = owner

    def execute(self, call: ExecuteCall, call_next: Callable[[ExecuteCall], Any]) -> Any:
        flask_app = self.owner.flask_app
        if flask_app is None:
            return call_next(call)
        with flask_app.app_context():
            return call_next(call)


class FlaskConveyor(Conveyor):
    """A `Conveyor` configured from a Flask app's config (`init_app`), whose tasks run in that
    app's context on the workers (and in eager mode). Everything else is a plain `Conveyor`:
    `@conveyor.task`, `@conveyor.periodic`, `conveyor.result(id)`, `conveyor worker`..."""

    def __init__(self, flask_app: Flask | None = None, url: str | None = None, *,
                 middleware: Sequence[Middleware] = (), **options: Any) -> None:
        self._explicit: dict[str, Any] = dict(options)
        if url is not None:
            self._explicit["url"] = url
        self._user_middleware = tuple(middleware)
        self.flask_app: Flask | None = None
        super().__init__(url, middleware=(AppContext(self), *middleware), **options)
        if flask_app is not None:
            self.init_app(flask_app)

    def init_app(self, flask_app: Flask) -> None:
        """Read the CONVEYOR_* settings from `flask_app.config`, bind to that app and register
        as `flask_app.extensions["conveyor"]`. Tasks declared before stay registered."""
        settings: dict[str, Any] = {}
        for key, option in CONFIG_KEYS.items():
            if flask_app.config.get(key) is not None:
                settings[option] = flask_app.config[key]
        settings.update(self._explicit)
        for option in ("result_ttl", "lease"):
            value = settings.get(option)
            if isinstance(value, str):
                try:
                    settings[option] = float(value)
                except ValueError:
                    raise ConfigError(f"CONVEYOR_{option.upper()} must be seconds, "
                                      f"not {value!r}") from None
        if isinstance(settings.get("eager"), str):
            settings["eager"] = settings["eager"].strip().lower() in ("1", "true", "yes", "on")
        self._reconfigure(settings)
        self.flask_app = flask_app
        flask_app.extensions["conveyor"] = self

    def _reconfigure(self, settings: dict[str, Any]) -> None:
        url = settings.pop("url", None)
        ttl = settings.get("result_ttl")
        if isinstance(ttl, timedelta):
            settings["result_ttl"] = ttl.total_seconds()
        self.configure(url, middleware=(AppContext(self), *self._user_middleware), **settings)
