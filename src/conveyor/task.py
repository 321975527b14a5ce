"""What `@app.task` makes: a callable with `delay`, `apply_async` and `map`, plus its options
and the context a bound task receives."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from .errors import ConfigError, Retry
from .ratelimit import Limits, pop_limits
from .retry import RetryPolicy

if TYPE_CHECKING:
    from .app import Conveyor
    from .canvas import Signature
    from .result import Result, ResultGroup

P = ParamSpec("P")
R = TypeVar("R")



def seconds(value: float | timedelta | None, what: str) -> float | None:
    """Durations are seconds (float) or timedelta everywhere."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{what} must be seconds or a timedelta, not {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class TaskOptions:
    name: str
    queue: str
    priority: int = 0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    timeout: float | None = None
    store_result: bool = True
    result_ttl: float | None = None
    bind: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # options owned by middleware
    limits: Limits | None = None  # rate_limit, concurrency(_key), soft_timeout (ratelimit.py)
    unique: bool = False  # one queued/running call per task + arguments (unique.py)
    unique_for: float | None = None  # ... and for this long after it finished


def build_options(fn: Callable[..., Any], default_queue: str, *, name: str | None = None,
                  queue: str | None = None, priority: int = 0, retries: int = 0,
                  retry_delay: float | timedelta = 1.0, retry_backoff: bool | float = False,
                  retry_backoff_max: float | timedelta = 600.0, retry_jitter: bool = False,
                  retry_on: type[BaseException] | Sequence[type[BaseException]] = (Exception,),
                  timeout: float | timedelta | None = None, store_result: bool = True,
                  result_ttl: float | timedelta | None = None, bind: bool = False,
                  unique: bool = False, unique_for: float | timedelta | None = None,
                  owned: frozenset[str] = frozenset(), **unknown: Any) -> TaskOptions:
    """Validate decorator options at decoration time, naming the bad one. Options in `owned`
    (declared by installed middleware) are kept in `extra`."""
    task_name = name or f"{fn.__module__}.{fn.__name__}"  # API.md: <module>.<function>
    extra = {k: unknown.pop(k) for k in list(unknown) if k in owned}
    limits = pop_limits(unknown, task_name, seconds(timeout, f"task {task_name}: timeout"))
    if unknown:
        raise ConfigError(f"task {task_name}: unknown option(s) {', '.join(sorted(unknown))}")
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ConfigError(f"task {task_name}: retries must be a whole number >= 0")
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise ConfigError(f"task {task_name}: priority must be an integer")
    on = (retry_on,) if isinstance(retry_on, type) else tuple(retry_on)
    if not all(isinstance(e, type) and issubclass(e, BaseException) for e in on):
        raise ConfigError(f"task {task_name}: retry_on must be exception classes")
    delay = seconds(retry_delay, f"task {task_name}: retry_delay") or 0.0
    limit = seconds(timeout, f"task {task_name}: timeout")
    if limit is not None and limit <= 0:
        raise ConfigError(f"task {task_name}: timeout must be > 0 seconds")
    return TaskOptions(
        name=task_name,
        queue=queue or default_queue,
        priority=priority,
        retry=RetryPolicy(retries, delay, retry_backoff,
                          seconds(retry_backoff_max, "retry_backoff_max") or 0.0, retry_jitter),
        retry_on=on,
        timeout=limit,
        store_result=store_result,
        result_ttl=seconds(result_ttl, f"task {task_name}: result_ttl"),
        bind=bind,
        extra=extra,
        limits=limits,
        unique=_unique(unique, task_name) or unique_for is not None,
        unique_for=_unique_for(unique_for, task_name),
    )


def _unique(unique: Any, task: str) -> bool:
    if unique is None:  # the "off" value, as for the other options
        return False
    if not isinstance(unique, bool):
        raise ConfigError(f"task {task}: unique must be True or False, not {unique!r}")
    return unique


def _unique_for(unique_for: float | timedelta | None, task: str) -> float | None:
    value = seconds(unique_for, f"task {task}: unique_for")
    if value is not None and value < 0:
        raise ConfigError(f"task {task}: unique_for must be >= 0 seconds")
    return value


@dataclass(slots=True)
class TaskContext:
    """What a `bind=True` task receives first."""

    id: str
    name: str
    attempt: int
    retries_left: int
    queue: str
    cancelled: bool = False
    # docs/control.md: set (with `cancelled`) when revoke(terminate=True) stops the task in a
    # thread pool; and how `progress` reaches the backend (None: nowhere, e.g. a plain call).
    revoked: bool = False
    reporter: Callable[[dict[str, Any]], bool] | None = field(default=None, repr=False,
                                                              compare=False)

    def retry(self, delay: float | None = None, exc: BaseException | None = None) -> None:
        """Run this task again after `delay` seconds (or its retry policy); raises."""
        raise Retry(delay=delay, exc=exc)

    def progress(self, current: Any, total: Any = None, **info: Any) -> bool:
        """Report progress: `Result.progress` then reads `{"current": current, "total": total,
        **info}` and the state is PROGRESS until the task finishes. Each call is one backend
        write (nothing is coalesced); False when it was not stored (the lease was lost, the
        backend is unreachable, or the task runs outside a worker)."""
        if self.reporter is None:
            return False
        return self.reporter({"current": current, "total": total, **info})


class Task(Generic[P, R]):
    """A registered task. Calling it runs the function here; `delay` enqueues it."""

    def __init__(self, app: Conveyor, fn: Callable[..., Any], options: TaskOptions) -> None:
        self.app = app
        self.fn = fn
        self.options = options
        self.name = options.name
        self.is_async = inspect.iscoroutinefunction(fn)
        self.__wrapped__ = fn
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", self.name)
        self.__module__ = getattr(fn, "__module__", "")
        self._signature: inspect.Signature | None = None
        self._arity: int | None = None

    @property
    def signature(self) -> inspect.Signature:
        """The signature callers must fit (without the context of a bound task)."""
        if self._signature is None:
            sig = inspect.signature(self.fn)
            if self.options.bind:
                params = list(sig.parameters.values())[1:]
                sig = sig.replace(parameters=params)
            self._signature = sig
        return self._signature

    def check_arguments(self, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
        """Raise TypeError when these arguments do not fit the function (as calling it would).
        A plain positional call of a simple function skips the full `bind` (the hot path)."""
        if self._arity is None:
            params = self.signature.parameters.values()
            simple = all(p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty
                         for p in params)
            self._arity = len(self.signature.parameters) if simple else -1
        if kwargs or self._arity < 0 or len(args) != self._arity:
            self.signature.bind(*args, **kwargs)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if self.options.bind:
            ctx = TaskContext("local", self.name, 1, self.options.retry.retries,
                              self.options.queue)
            result = self.fn(ctx, *args, **kwargs)
        else:
            result = self.fn(*args, **kwargs)
        if self.is_async:
            import asyncio

            try:
                asyncio.get_running_loop()
            except RuntimeError:  # sync code: run it here and now
                return asyncio.run(result)  # type: ignore[no-any-return]
            # async code: hand back the coroutine to await, as the plain function would
        return result  # type: ignore[no-any-return]

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> Result:
        """Enqueue with these arguments and return a Result at once."""
        return self.app.send(self, args, kwargs)

    def apply_async(self, args: Sequence[Any] | None = None,
                    kwargs: dict[str, Any] | None = None, *,
                    countdown: float | timedelta | None = None, eta: datetime | None = None,
                    queue: str | None = None, priority: int | None = None,
                    expires: float | timedelta | datetime | None = None,
                    retries: int | None = None, task_id: str | None = None,
                    connection: Any = None, **options: Any) -> Result:
        """Enqueue with options; see API.md §2. `connection`: a database connection of the
        PostgreSQL backend's database with a transaction open; the task is written in that
        transaction, so it exists only if the transaction commits. Also accepted in `options`:
        `link=` / `link_error=` (signatures run on success with the value / on failure with
        `task_id, exc_type, exc_message`), `unique_key=` and `unique_for=` (a call that finds
        the key held gets the holder's Result); see docs/workflows.md."""
        if connection is not None:
            options["connection"] = connection
        return self.app.send(self, tuple(args or ()), dict(kwargs or {}), countdown=countdown,
                             eta=eta, queue=queue, priority=priority, expires=expires,
                             retries=retries, task_id=task_id, **options)

    async def adelay(self, *args: P.args, **kwargs: P.kwargs) -> Result:
        """`delay` for asyncio code: the backend call runs in a thread, not on the loop."""
        import asyncio

        return await asyncio.to_thread(self.app.send, self, args, kwargs)

    async def aapply_async(self, args: Sequence[Any] | None = None,
                           kwargs: dict[str, Any] | None = None, **options: Any) -> Result:
        """`apply_async` for asyncio code."""
        import asyncio

        return await asyncio.to_thread(self.apply_async, args, kwargs, **options)

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A signature of this task (a call to make later, in a workflow): it receives the
        previous step's value before `args`."""
        from .canvas import Signature

        return Signature(self, args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable signature: it ignores the previous step's value."""
        from .canvas import Signature

        return Signature(self, args, kwargs, immutable=True)

    def map(self, argument_tuples: Iterable[Sequence[Any] | Any]) -> ResultGroup:
        """Enqueue one task per argument tuple (one backend call); results keep that order."""
        calls = [tuple(a) if isinstance(a, list | tuple) else (a,) for a in argument_tuples]
        return self.app.send_many(self, calls)

    def __repr__(self) -> str:
        return f"<Task {self.name}>"
