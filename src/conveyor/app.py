"""Conveyor: settings, the task registry, the backend binding and the producer calls."""

from __future__ import annotations

import contextvars
import os
import socket
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, TypeVar, overload

from . import tracing
from .backends import create_backend, redact, resolve_url
from .backends.base import SUCCESS, Backend, Message, StoredResult
from .clock import Clock, SystemClock
from .envelope import Envelope
from .errors import ConfigError, SerializationError
from .middleware import EnqueueCall, Middleware, chain_enqueue
from .result import EagerResult, Result, ResultGroup, failure_from
from .serializers import Codec, make_serializer
from .task import Task, build_options, seconds
from .unique import dedup_key

if TYPE_CHECKING:
    from .periodic import Cron, PeriodicEntry

F = TypeVar("F", bound=Callable[..., Any])


#: Messages and results over this many bytes are refused at the call site. One default for
#: every backend, so code tried on SQLite does not fail later on Redis or PostgreSQL, whose
#: servers hold (and send) every byte of every message.
DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024


class Conveyor:
    """One queue application: where tasks live (the backend URL) and which tasks exist.

    Creating it does no I/O; the backend connects on first use.
    """

    def __init__(self, url: str | None = None, *, default_queue: str = "default",
                 result_ttl: float | timedelta = 86400, serializer: str = "json",
                 secret_key: str | bytes | None = None, lease: float | timedelta = 60,
                 eager: bool = False, clock: Clock | None = None,
                 middleware: Sequence[Middleware] = (),
                 max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self.url = resolve_url(url)
        self.max_message_size = _size_limit(max_message_size)
        self.default_queue = default_queue
        self.result_ttl = seconds(result_ttl, "result_ttl") or 0.0
        self.lease = seconds(lease, "lease") or 0.0
        if self.lease < 1:
            raise ConfigError(f"lease must be at least 1 second, not {self.lease}")
        self.eager = eager
        self.clock: Clock = clock or SystemClock()
        self.codec = Codec(make_serializer(serializer, secret_key), secret_key)
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.periodic_tasks: dict[str, PeriodicEntry] = {}  # name -> schedule (@app.periodic)
        self.middleware: tuple[Middleware, ...] = tuple(middleware)
        for m in self.middleware:
            if not isinstance(m, Middleware):
                raise ConfigError(f"middleware must be conveyor.Middleware instances, not {m!r}")
        self._owned_options = frozenset().union(*(m.options for m in self.middleware))
        self._enqueue = chain_enqueue(self.middleware, self._enqueue_core)
        self._through_middleware = self._enqueue != self._enqueue_core
        # Eager mode stores nothing in the backend; this lets app.result(id) find its outcomes.
        self._eager_outcomes: dict[str, StoredResult] = {}
        self._backend: Backend = create_backend(self.url)
        # The caller's open database transaction, while inside `with app.transaction(conn)`.
        self._transaction: contextvars.ContextVar[Any] = contextvars.ContextVar(
            f"conveyor-transaction-{id(self)}", default=None)

    def __repr__(self) -> str:
        return f"<Conveyor {redact(self.url)} tasks={len(self.tasks)}>"

    @property
    def backend(self) -> Backend:
        return self._backend

    @property
    def safe_url(self) -> str:
        """The backend URL with any password hidden."""
        return redact(self.url)

    def close(self) -> None:
        self._backend.close()

    def configure(self, url: str | None = None, **settings: Any) -> None:
        """Apply new settings (the constructor's keywords) to this app, keeping the tasks and
        periodic tasks declared on it. For frameworks whose settings are known only after the
        tasks were declared (a Flask app factory, Django settings). Does no I/O; the previous
        backend is closed. Settings not given return to their defaults, except the clock and
        the middleware, which are kept."""
        tasks, periodic = dict(self.tasks), dict(self.periodic_tasks)
        old_backend = self._backend
        settings.setdefault("clock", self.clock)
        settings.setdefault("middleware", self.middleware)
        Conveyor.__init__(self, url, **settings)
        self.tasks.update(tasks)
        self.periodic_tasks.update(periodic)
        try:
            old_backend.close()
        except Exception:  # it may never have connected
            pass

    # --- registry -------------------------------------------------------------------------
    @overload
    def task(self, fn: F) -> Task[Any, Any]: ...

    @overload
    def task(self, fn: None = None, **options: Any) -> Callable[[F], Task[Any, Any]]: ...

    def task(self, fn: Callable[..., Any] | None = None, **options: Any) -> Any:
        """Register a function as a task: `@app.task` or `@app.task(name=..., retries=...)`."""
        def register(f: Callable[..., Any]) -> Task[Any, Any]:
            if isinstance(f, Task):
                raise ConfigError(f"{f.name} is already a task")
            opts = build_options(f, self.default_queue, owned=self._owned_options, **options)
            existing = self.tasks.get(opts.name)
            if existing is not None and existing.fn is not f and (
                    getattr(existing.fn, "__code__", None) is not getattr(f, "__code__", None)):
                raise ConfigError(f"two different functions are registered as task "
                                  f"{opts.name!r}: give one of them name=")
            t: Task[Any, Any] = Task(self, f, opts)
            self.tasks[opts.name] = t
            return t
        if fn is not None:
            if options:
                raise ConfigError("use @app.task or @app.task(**options), not both")
            return register(fn)
        return register

    def periodic(self, schedule: str | Cron | None = None, *,
                 every: float | timedelta | None = None, tz: str | tzinfo | None = None,
                 catch_up: bool = True, overlap: bool = True, args: Sequence[Any] = (),
                 kwargs: dict[str, Any] | None = None,
                 **options: Any) -> Callable[[Callable[..., Any]], Task[Any, Any]]:
        """Register a function as a task that runs on a schedule: cron text (local zone unless
        `tz=`), `crontab(...)`, or `every=` seconds/timedelta; called with `args`/`kwargs`.
        Every worker runs the scheduler, yet each tick runs once (docs/periodic.md). Other
        options are `@app.task`'s; `.delay()` works as for any task."""
        from .periodic import periodic_decorator

        return periodic_decorator(self, schedule, every=every, tz=tz, catch_up=catch_up,
                                  overlap=overlap, args=args, kwargs=kwargs, **options)

    def queues(self) -> list[str]:
        """The default queue and every queue a registered task names."""
        names = [self.default_queue]
        for t in self.tasks.values():
            if t.options.queue not in names:
                names.append(t.options.queue)
        return names

    # --- producing ------------------------------------------------------------------------
    def _envelope(self, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                  *, now: float, task_id: str | None = None, queue: str | None = None,
                  priority: int | None = None, expires: float | timedelta | datetime | None = None,
                  retries: int | None = None,
                  flow: dict[str, Any] | None = None) -> tuple[Envelope, bytes]:
        try:
            task.check_arguments(args, kwargs)
        except TypeError as exc:
            raise TypeError(f"{task.name}: {exc}") from None
        if retries is not None and (not isinstance(retries, int) or isinstance(retries, bool)
                                    or retries < 0):
            raise ConfigError(f"{task.name}: retries must be a whole number >= 0")
        if priority is not None and (not isinstance(priority, int) or isinstance(priority, bool)):
            raise ConfigError(f"{task.name}: priority must be an integer, not {priority!r}")
        if task_id is not None and (not isinstance(task_id, str) or not task_id):
            raise ConfigError(f"{task.name}: task_id must be a non-empty string, not {task_id!r}")
        if queue is not None and (not isinstance(queue, str) or not queue):
            raise ConfigError(f"{task.name}: queue must be a non-empty string, not {queue!r}")
        expires_at: float | None = None
        if isinstance(expires, datetime):
            expires_at = _timestamp(expires)
        elif expires is not None:
            expires_at = now + (seconds(expires, "expires") or 0.0)
        env = Envelope(
            id=task_id or os.urandom(16).hex(),
            task=task.name,
            args=list(args),
            kwargs=kwargs,
            queue=queue or task.options.queue,
            priority=task.options.priority if priority is None else priority,
            created_at=now,
            expires_at=expires_at,
            retries=retries,
            flow=flow,
            trace=tracing.current_context(),  # the caller's span, with OpenTelemetry only
        )
        try:
            body = self.codec.encode(env.to_dict())
        except SerializationError as exc:
            raise _name_culprit(self.codec, task, args, kwargs, exc) from None
        self._check_size(body, f"{task.name}: the message",
                         "; pass a reference to the data (a path, a URL, a database id) "
                         "instead of the data")
        return env, body

    def send(self, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any],
             **options: Any) -> Result:
        """Enqueue one call of `task`; what `delay` and `apply_async` do (through the
        middleware's `enqueue`, when any is installed)."""
        if self._through_middleware:
            return self._enqueue(EnqueueCall(task, tuple(args), dict(kwargs), options))
        return self._send(task, args, kwargs, **options)

    def _enqueue_core(self, call: EnqueueCall) -> Result:
        return self._send(call.task, call.args, call.kwargs, **call.options)

    def _send(self, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any], *,
              countdown: float | timedelta | None = None, eta: datetime | None = None,
              queue: str | None = None, priority: int | None = None,
              expires: float | timedelta | datetime | None = None, retries: int | None = None,
              task_id: str | None = None, connection: Any = None, link: Any = None,
              link_error: Any = None, unique_key: str | None = None,
              unique_for: float | timedelta | None = None, flow: dict[str, Any] | None = None,
              **options: Any) -> Result:
        if options:
            raise ConfigError(f"{task.name}: unknown apply_async option(s) "
                              f"{', '.join(sorted(options))}")
        if countdown is not None and eta is not None:
            raise ConfigError(f"{task.name}: give countdown or eta, not both")
        now = self.clock.now()
        if link is not None or link_error is not None:  # workflow links (canvas.py)
            from .canvas import link_flow

            flow = link_flow(flow, link, link_error)
        env, body = self._envelope(task, args, kwargs, now=now, task_id=task_id, queue=queue,
                                   priority=priority, expires=expires, retries=retries,
                                   flow=flow)
        key, retention = None, 0.0
        if unique_key is not None or unique_for is not None or task.options.unique:
            key, retention = dedup_key(task, args, kwargs, unique_key, unique_for)
        if self.eager:
            return self._run_eager(task, env, body)
        ready_at = now
        if countdown is not None:
            ready_at = now + (seconds(countdown, "countdown") or 0.0)
        elif eta is not None:
            ready_at = _timestamp(eta)
        ids = self._write([Message(env.id, env.queue, body, env.priority, ready_at, key,
                                   retention)], now, connection)
        return Result(self, ids[0], task.name)  # a unique task's holder, when one is queued

    def send_many(self, task: Task[Any, Any], calls: Sequence[tuple[Any, ...]]) -> ResultGroup:
        """Enqueue many calls of one task in one backend call (what `map` does). With enqueue
        middleware installed, each call goes through it on its own."""
        if self._through_middleware:
            return ResultGroup(self, [self.send(task, args, {}) for args in calls])
        now = self.clock.now()
        built = [self._envelope(task, args, {}, now=now) for args in calls]
        if self.eager:
            return ResultGroup(self, [self._run_eager(task, env, body) for env, body in built])
        keys = [dedup_key(task, args, {}) if task.options.unique else (None, 0.0)
                for args in calls]
        ids = self._write([Message(env.id, env.queue, body, env.priority, now, *key)
                           for (env, body), key in zip(built, keys, strict=True)], now, None)
        return ResultGroup(self, [Result(self, i, task.name) for i in ids])

    def _write(self, messages: list[Message], now: float, connection: Any) -> list[str]:
        """Enqueue through the backend, or inside the caller's transaction when one is given
        (or open via `transaction`)."""
        if connection is None:
            connection = self._transaction.get()
        if connection is None:
            return self.backend.enqueue(messages, now)
        return self.backend.enqueue_in(connection, messages, now)

    @contextmanager
    def transaction(self, connection: Any) -> Iterator[Any]:
        """Within this block, every `delay`, `apply_async` and `map` of this app is written
        in `connection`'s open transaction (PostgreSQL): rolled back, the tasks never existed;
        committed, they run. The block does not commit or roll back; the caller does::

            with conn.transaction(), app.transaction(conn):
                orders.insert(conn, order)
                send_receipt.delay(order.id)
        """
        if connection is None:
            raise ConfigError("app.transaction() needs a database connection, not None")
        token = self._transaction.set(connection)
        try:
            yield connection
        finally:
            self._transaction.reset(token)

    def result(self, task_id: str) -> Result:
        """A Result for an id, from any process (in eager mode: of a task this app ran)."""
        eager = self._eager_outcomes.get(task_id)
        if eager is not None:
            return EagerResult(self, task_id, "", eager)
        return Result(self, task_id)

    # --- outcomes -------------------------------------------------------------------------
    def encode_value(self, value: Any, task: str = "") -> bytes:
        """A task's return value as stored (with the task's name, for the dashboard); bound
        by `max_message_size` like messages."""
        data = self.codec.encode({"value": value, "task": task} if task else {"value": value})
        self._check_size(data, "the result")
        return data

    def _check_size(self, data: bytes, what: str, advice: str = "") -> None:
        """SerializationError naming `what`, its size and the limit, when over it."""
        if self.max_message_size is not None and len(data) > self.max_message_size:
            raise SerializationError(
                f"{what} is {len(data):,} bytes, over the limit of {self.max_message_size:,} "
                f"bytes (Conveyor(max_message_size=...)){advice}")

    def encode_failure(self, exc_type: str, exc_message: str, traceback: str = "",
                       task: str = "") -> bytes:
        return self.codec.encode({"exc_type": exc_type, "exc_message": exc_message,
                                  "traceback": traceback, "task": task})

    def decode_outcome(self, stored: StoredResult, task_name: str | None,
                       propagate: bool) -> Any:
        payload = None
        if stored.data is not None:
            try:
                payload = self.codec.decode(stored.data)
            except SerializationError as exc:
                payload = {"exc_type": "SerializationError",
                           "exc_message": f"stored result cannot be decoded: {exc}"}
        if stored.state == SUCCESS and isinstance(payload, dict) and "value" in payload:
            return payload["value"]
        if stored.state == SUCCESS and payload is None:
            return None
        failure = failure_from(payload, stored.id, task_name, stored.state)
        if propagate:
            raise failure
        return failure

    # --- in-process execution (eager mode, users' tests) ----------------------------------
    def _run_eager(self, task: Task[Any, Any], env: Envelope, body: bytes) -> Result:
        from .worker.flow import run_eager

        outcome = run_eager(self, body, env.id)  # run_inline, then any workflow steps it made
        self._eager_outcomes[env.id] = outcome
        return EagerResult(self, env.id, task.name, outcome)

    def drain(self, queues: Sequence[str] | None = None) -> int:
        """Run every ready task in this process until none is left; retries scheduled during
        the call are waited for (on the app's clock). Returns how many deliveries ran."""
        from .worker.executor import drain

        return drain(self, None if queues is None else list(queues))

    def worker_id(self) -> str:
        return f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"


def _size_limit(value: int | None) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1024:
        raise ConfigError(f"max_message_size must be a whole number of bytes >= 1024, or None "
                          f"for no limit, not {value!r}")
    return value


def _timestamp(when: datetime) -> float:
    if when.tzinfo is None:
        when = when.astimezone()  # naive datetimes are local time, as datetime.timestamp() says
    return when.astimezone(UTC).timestamp()


def _name_culprit(codec: Codec, task: Task[Any, Any], args: tuple[Any, ...],
                  kwargs: dict[str, Any], exc: SerializationError) -> SerializationError:
    """Say which argument could not be serialized."""
    names = list(task.signature.parameters)
    for i, value in enumerate(args):
        try:
            codec.serializer.dumps(value)
        except SerializationError as inner:
            label = f"argument {names[i]!r}" if i < len(names) else f"positional argument {i}"
            return SerializationError(f"{task.name}: {label} (position {i}) cannot be "
                                      f"serialized with {codec.serializer.name}: {inner}; "
                                      "nothing was enqueued")
    for key, value in kwargs.items():
        try:
            codec.serializer.dumps({key: value})
        except SerializationError as inner:
            return SerializationError(f"{task.name}: argument {key!r} cannot be serialized with "
                                      f"{codec.serializer.name}: {inner}; nothing was enqueued")
    return SerializationError(f"{task.name}: arguments cannot be serialized: {exc}; "
                              "nothing was enqueued")


__all__ = ["Conveyor"]
