"""Django: settings, task discovery, a worker command, enqueue on commit, and a backend for
Django's tasks framework (`django.tasks`, or the `django-tasks` backport before Django 6).

Set-up::

    # settings.py
    INSTALLED_APPS = [..., "conveyor.contrib.django"]
    CONVEYOR = {"url": "postgresql://app@db/shop"}     # any Conveyor(...) keyword too

    # shop/tasks.py: found in every installed app, in the worker and in the web process
    from conveyor.contrib.django import app

    @app.task(retries=3)
    def send_receipt(order_id): ...

    # shop/views.py
    with transaction.atomic():
        order = Order.objects.create(...)
        send_receipt.delay_on_commit(order.id)       # enqueued only if the transaction commits

    $ python manage.py conveyor_worker -c 4            # the options of `conveyor worker`

`CONVEYOR` keys: `url` (else CONVEYOR_URL, else sqlite:///conveyor.db), `default_queue`,
`result_ttl`, `serializer`, `secret_key`, `lease`, `eager`, `max_message_size`, `middleware`
(instances or dotted paths), `transactional` (see below), or `app`: "module:attribute" of a Conveyor you
made yourself, used instead of one built from these settings.

`task.delay_on_commit(*args, **kwargs)` and `task.apply_async_on_commit(args, kwargs,
using=None, **options)` return a `Result` at once. When conveyor's backend is the PostgreSQL
database Django writes to (same host, port and name; or `"transactional": True`) and a
transaction is open, the task is written in that very transaction on Django's connection:
it exists exactly when the transaction commits. Otherwise it is enqueued by
`transaction.on_commit`, right after the commit (a crash between the two loses it), and never
when the transaction rolls back. `"transactional": False` always uses `on_commit`.

Tasks run with Django's usual database connection hygiene: connections that are too old or
broken are closed before and after each task (`close_old_connections`), as after a request.
In tests, `override_settings(CONVEYOR={"url": "memory://", "eager": True})` reconfigures the
same app (its tasks stay registered).
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ...app import Conveyor
from ...middleware import ExecuteCall, Middleware
from ...result import Result
from ...task import Task

__all__ = ["DjangoConveyor", "DjangoTask", "apply_async_on_commit", "delay_on_commit",
           "get_app"]

#: The APP path of the settings' app, for `conveyor worker conveyor.contrib.django:app`.
APP_PATH = "conveyor.contrib.django:app"
_OWN_KEYS = ("transactional", "app")

_lock = threading.Lock()
_app: Conveyor | None = None


class DjangoConnections(Middleware):
    """Close database connections that are too old or broken before and after each task,
    as Django does around each request."""

    def execute(self, call: ExecuteCall, call_next: Callable[[ExecuteCall], Any]) -> Any:
        from django.db import close_old_connections  # type: ignore[import-untyped,import-not-found,unused-ignore]

        close_old_connections()
        try:
            return call_next(call)
        finally:
            close_old_connections()


class DjangoTask(Task[Any, Any]):
    """A task of the settings' app: a `Task` plus the on-commit producers."""

    def delay_on_commit(self, *args: Any, **kwargs: Any) -> Result:
        """`delay`, once the current transaction commits (or in it, on PostgreSQL)."""
        return apply_async_on_commit(self, args, kwargs)

    def apply_async_on_commit(self, args: Sequence[Any] | None = None,
                              kwargs: dict[str, Any] | None = None, *, using: str | None = None,
                              **options: Any) -> Result:
        """`apply_async`, once the transaction of database `using` commits."""
        return apply_async_on_commit(self, args, kwargs, using=using, **options)


class DjangoConveyor(Conveyor):
    """The Conveyor built from `settings.CONVEYOR`: its tasks are `DjangoTask`s."""

    def task(self, fn: Callable[..., Any] | None = None, **options: Any) -> Any:
        made: Any = super().task(fn, **options)
        if fn is not None:
            return _as_django_task(made)

        def register(f: Callable[..., Any]) -> Task[Any, Any]:
            return _as_django_task(made(f))

        return register


def _as_django_task(task: Task[Any, Any]) -> Task[Any, Any]:
    if type(task) is Task:
        task.__class__ = DjangoTask
    return task


def settings_dict() -> dict[str, Any]:
    """`settings.CONVEYOR`, checked."""
    from django.conf import settings  # type: ignore[import-untyped,import-not-found,unused-ignore]
    from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped,import-not-found,unused-ignore]

    value = getattr(settings, "CONVEYOR", None) or {}
    if not isinstance(value, dict):
        raise ImproperlyConfigured(f"settings.CONVEYOR must be a dict, not {value!r}")
    return value


def _conveyor_options(config: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    from django.utils.module_loading import import_string  # type: ignore[import-untyped,import-not-found,unused-ignore]

    options = {k: v for k, v in config.items() if k not in _OWN_KEYS}
    url = options.pop("url", None) or os.environ.get("CONVEYOR_URL") or None
    middleware = [import_string(m)() if isinstance(m, str) else m
                  for m in options.pop("middleware", ())]
    options["middleware"] = (DjangoConnections(), *middleware)
    return url, options


def _build(config: dict[str, Any]) -> Conveyor:
    from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped,import-not-found,unused-ignore]

    from ...errors import ConfigError

    if config.get("app"):
        from ...loader import load_app

        try:
            return load_app(str(config["app"]))
        except ConfigError as exc:
            raise ImproperlyConfigured(f"settings.CONVEYOR['app']: {exc}") from None
    url, options = _conveyor_options(config)
    try:
        return DjangoConveyor(url, **options)
    except TypeError as exc:
        raise ImproperlyConfigured(f"settings.CONVEYOR: {exc}") from None
    except ConfigError as exc:
        raise ImproperlyConfigured(f"settings.CONVEYOR: {exc}") from None


def get_app() -> Conveyor:
    """The project's Conveyor, built from `settings.CONVEYOR` on first use (one per process,
    like Django's database connections)."""
    global _app
    if _app is None:
        with _lock:
            if _app is None:
                _app = _build(settings_dict())
    return _app


def settings_changed(*, setting: str, **kwargs: Any) -> None:
    """`setting_changed` receiver: apply a new CONVEYOR (tests' override_settings) to the
    same app, so the tasks declared on it stay registered."""
    if setting != "CONVEYOR" or _app is None:
        return
    config = settings_dict()
    if config.get("app") or not isinstance(_app, DjangoConveyor):
        return
    url, options = _conveyor_options(config)
    _app.configure(url, **options)


def __getattr__(name: str) -> Any:
    if name == "app":
        return get_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- enqueue on commit ------------------------------------------------------------------------
class OnCommitResult(Result):
    """The Result of a task enqueued on commit: reads like `app.result(id)` at each call, so
    it also finds the outcome of an eager run that happened at commit time."""

    __slots__ = ()

    def _now(self) -> Result:
        found = self.app.result(self.id)
        found.task_name = self.task_name
        return found

    def _stored(self) -> Any:
        return self._now()._stored()

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self._now().get(*args, **kwargs)


def delay_on_commit(task: Task[Any, Any], *args: Any, **kwargs: Any) -> Result:
    """Enqueue `task(*args, **kwargs)` when the current transaction commits (any Conveyor's
    task; `DjangoTask.delay_on_commit` calls this)."""
    return apply_async_on_commit(task, args, kwargs)


def apply_async_on_commit(task: Task[Any, Any], args: Sequence[Any] | None = None,
                          kwargs: dict[str, Any] | None = None, *, using: str | None = None,
                          **options: Any) -> Result:
    """`task.apply_async(args, kwargs, **options)` tied to the transaction of database
    `using` (default: "default"). Arguments are checked now: a call that does not fit the
    function or cannot be serialized raises here, not after the commit."""
    from django.db import DEFAULT_DB_ALIAS, connections, transaction  # type: ignore[import-untyped,import-not-found,unused-ignore]

    alias = using or DEFAULT_DB_ALIAS
    call_args, call_kwargs = tuple(args or ()), dict(kwargs or {})
    task_id = options.pop("task_id", None) or uuid.uuid4().hex
    raw = transactional_connection(task.app, connections[alias])
    if raw is not None:
        return task.apply_async(call_args, call_kwargs, connection=raw, task_id=task_id,
                                **options)
    try:
        task.check_arguments(call_args, call_kwargs)
    except TypeError as exc:
        raise TypeError(f"{task.name}: {exc}") from None
    task.app.codec.encode({"args": list(call_args), "kwargs": call_kwargs})  # serializable?

    def enqueue() -> None:
        task.apply_async(call_args, call_kwargs, task_id=task_id, **options)

    transaction.on_commit(enqueue, using=alias)
    return OnCommitResult(task.app, task_id, task.name)


def transactional_connection(app: Conveyor, connection: Any) -> Any:
    """Django's raw DB-API connection when a task can be written in its open transaction:
    conveyor on PostgreSQL, Django on the same database with a transaction open."""
    mode = settings_dict().get("transactional")
    if mode is False or app.eager or not app.url.startswith(("postgres://", "postgresql")):
        return None
    if getattr(connection, "vendor", "") != "postgresql" or not connection.in_atomic_block:
        return None
    if mode is not True and not same_database(app.url, connection.settings_dict):
        return None
    connection.ensure_connection()
    return connection.connection


def same_database(url: str, django_db: dict[str, Any]) -> bool:
    """Whether a postgresql:// URL and a Django DATABASES entry name the same database."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    name = (query.get("dbname") or [parts.path.lstrip("/")])[0]
    host = (query.get("host") or [parts.hostname or ""])[0]
    port = parts.port or int((query.get("port") or ["5432"])[0])
    local = {"", "localhost", "127.0.0.1", "::1"}
    d_host = str(django_db.get("HOST") or "")
    d_port = int(django_db.get("PORT") or 5432)
    same_host = host == d_host or (host in local and d_host in local)
    return bool(name) and name == django_db.get("NAME") and same_host and port == d_port
