"""Move off uWSGI's Spooler by changing an import line.

`uwsgidecorators` keeps its spooled functions in module-level globals and needs the uWSGI
server around it. Here the same decorators belong to a `Spooler` bound to an explicit
`Conveyor`, so any conveyor backend holds the spool and `conveyor worker` runs it::

    # myproject/spooler.py: written once
    from conveyor import Conveyor
    from conveyor.contrib.uwsgi import Spooler

    app = Conveyor("sqlite:///var/lib/myproject/spool.db")
    spooler = Spooler(app)
    spool, spoolraw, spoolforever, timer, cron = (
        spooler.spool, spooler.spoolraw, spooler.spoolforever, spooler.timer, spooler.cron)

    # everywhere else, instead of `from uwsgidecorators import spool, timer`:
    from myproject.spooler import spool, timer
    from conveyor.contrib.uwsgi import SPOOL_OK, SPOOL_RETRY, SPOOL_IGNORE

and `conveyor worker myproject.spooler` replaces `uwsgi --spooler ...`.

What keeps the Spooler's meaning:

- `@spool` / `@spoolraw` / `@spoolforever`, bare or with `(pass_arguments=True)`. Calling the
  decorated object, or its `.spool(...)`, enqueues (as in uWSGI >= 1.9.13); it returns the
  `Result` (uWSGI returned the spool file's name; `result.id` plays that part).
- Without `pass_arguments` the function receives one dict: the keys given (a dict as first
  argument and/or keyword arguments), plus `spooler_task_name` (the task id) and
  `ud_spool_func`. Bytes keys and values arrive as `str`, as `uwsgidecorators` decodes them;
  `body` arrives as given (bytes stay bytes). With `pass_arguments=True` it is called with the
  arguments given, less the special keys.
- Special keys: `at` (unix time: not run before), `priority` (uWSGI's lower number runs first;
  it becomes conveyor priority `-priority`), `body` (a large value, bytes allowed), `spooler`
  (the conveyor queue to use, in place of the spool directory).
- Return codes: `@spool` always counts as `SPOOL_OK` (its return value is ignored);
  `@spoolforever` always as `SPOOL_RETRY`; `@spoolraw` returns one: `SPOOL_OK` done,
  `SPOOL_RETRY` run again after `frequency` seconds (the uWSGI `spooler-frequency`, default 30),
  `SPOOL_IGNORE` leave it alone: the task goes to the dead letters, where `conveyor dead retry`
  puts it back, as a spool file no spooler handles stays in its directory. Any other integer
  counts as `SPOOL_RETRY`, as in uWSGI. A task's result is the code of its run.
- An exception, or a `@spoolraw` function that returns something other than an integer: the
  task runs again after `frequency` seconds, without limit like uWSGI unless `retries=` is
  given; the attempts and the traceback show in the worker log (and with `retries=N`, the last
  failure in the dead letters).
- `@timer(seconds)` (and `@rbtimer`) runs the function every `seconds` on the workers
  (`app.periodic(every=seconds)`), once per tick however many workers run; `@cron(minute,
  hour, day, month, dayweek)` with uWSGI's `-1` for "every" and `-N` for "every N". The
  function receives the signal number, as a uWSGI signal handler does.

A run again after `SPOOL_RETRY` (and each round of `@spoolforever`) is a new task with a new
id, enqueued by the run before; so `app.drain()` returns after one round, and the next round
runs once `frequency` seconds have passed. In eager mode nothing is enqueued again, and an
exception fails the call at once instead of retrying without end.
"""

from __future__ import annotations

import base64
import inspect
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, overload

from ..app import Conveyor
from ..errors import ConfigError, Reject, Retry
from ..periodic import Cron
from ..result import Result
from ..task import Task, TaskContext

__all__ = ["SPOOL_IGNORE", "SPOOL_OK", "SPOOL_RETRY", "SpoolFunction", "Spooler"]

# uWSGI's values (uwsgi.SPOOL_OK and friends), so stored codes compare equal.
SPOOL_OK = -2
SPOOL_RETRY = -1
SPOOL_IGNORE = 0

#: Keys the Spooler reads itself. They stay in the dict a plain `@spool` function receives
#: (as in uWSGI); with `pass_arguments=True` they are taken out of the keyword arguments.
SPECIAL_KEYS = ("spooler", "priority", "at", "body", "message_dict")
#: `retries=None`: run again without limit, as the uWSGI Spooler does.
UNLIMITED = 1_000_000_000
_BYTES = "__conveyor_bytes__"


class _Never(Exception):
    """Matches no exception: the spooler wrapper decides retries itself (see `_outcome`)."""


class SpoolFunction:
    """What `@spool` and friends return: call it (or `.spool(...)`) to enqueue."""

    def __init__(self, spooler: Spooler, fn: Callable[..., Any], kind: str,
                 pass_arguments: bool, task: Task[Any, Any]) -> None:
        self.spooler = spooler
        self.fn = fn
        self.kind = kind  # "spool", "spoolraw" or "spoolforever"
        self.pass_arguments = pass_arguments
        self.task = task  # the conveyor task that runs it
        self.__name__ = getattr(fn, "__name__", task.name)
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn
        self.signature = inspect.signature(fn)

    @property
    def name(self) -> str:
        return self.task.name

    def __repr__(self) -> str:
        return f"<{self.kind} {self.task.name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Result:
        """Enqueue, as calling a `uwsgidecorators` spool function does."""
        return self.spool(*args, **kwargs)

    def spool(self, *args: Any, **kwargs: Any) -> Result:
        """Enqueue: `f.spool({"key": "value"}, other="value")`, or with `pass_arguments=True`
        `f.spool(*args, **kwargs)`; special keys `at`, `priority`, `body`, `spooler`."""
        if self.pass_arguments:
            special = {k: kwargs.pop(k) for k in SPECIAL_KEYS if k in kwargs}
            body = special.pop("body", None)
            message = special.pop("message_dict", None)
            if message is not None and not isinstance(message, Mapping):
                raise ConfigError(f"{self.name}: message_dict must be a dict")
            try:
                self.signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{self.name}: {exc}") from None
            payload: dict[str, Any] = {"args": list(args), "kwargs": kwargs}
            if body is not None:
                payload["body"] = _pack(body)
            options = _schedule(self.name, special)
            if "priority" in options:
                payload["priority"] = options["priority"]
            return self.task.apply_async((payload,), **options)
        if len(args) > 1:
            raise TypeError(f"{self.name}.spool() takes one dict and keyword arguments, "
                            f"not {len(args)} positional arguments (or use "
                            "pass_arguments=True)")
        arguments: dict[str, Any] = {}
        if args:
            if not isinstance(args[0], Mapping):
                raise TypeError(f"{self.name}.spool(): the positional argument must be a dict, "
                                f"not {type(args[0]).__name__}")
            arguments.update(args[0])
        arguments.update(kwargs)
        arguments = {_text(k): v for k, v in arguments.items()}
        body = arguments.pop("body", None)
        arguments = {k: _text(v) for k, v in arguments.items()}
        if body is not None:
            arguments["body"] = _pack(body)
        options = _schedule(self.name, arguments)
        payload = {"dict": arguments}
        if "priority" in options:
            payload["priority"] = options["priority"]
        return self.task.apply_async((payload,), **options)

    def respool(self, payload: dict[str, Any], queue: str) -> Result:
        """Run the same spool again in `frequency` seconds (SPOOL_RETRY, @spoolforever)."""
        return self.task.apply_async((payload,), countdown=self.spooler.frequency, queue=queue,
                                     priority=payload.get("priority"))


class Spooler:
    """The uWSGI Spooler's decorators, bound to `app`.

    `frequency`: seconds before a task that asked to run again (SPOOL_RETRY, @spoolforever,
    an exception) runs again, like uWSGI's `spooler-frequency`. `retries`: how many times a
    task that raised runs again; None (the default) is without limit, as in uWSGI. Other
    keyword options (`queue=`, `timeout=`, ...) are `@app.task`'s, for every spooled function.
    """

    def __init__(self, app: Conveyor, *, frequency: float = 30.0, retries: int | None = None,
                 **task_options: Any) -> None:
        if not isinstance(app, Conveyor):
            raise ConfigError(f"Spooler(app) needs a Conveyor, not {app!r}")
        if isinstance(frequency, bool) or not isinstance(frequency, int | float) or frequency < 0:
            raise ConfigError(f"Spooler frequency must be seconds >= 0, not {frequency!r}")
        if retries is not None and (not isinstance(retries, int) or isinstance(retries, bool)
                                    or retries < 0):
            raise ConfigError(f"Spooler retries must be a whole number >= 0 or None, "
                              f"not {retries!r}")
        for key in ("bind", "retry_on", "retry_delay"):
            if key in task_options:
                raise ConfigError(f"Spooler: option {key}= is set by the Spooler itself")
        self.app = app
        self.frequency = float(frequency)
        self.retries = retries
        self.task_options = task_options
        self.functions: dict[str, SpoolFunction] = {}
        self._next_signum = 0

    # --- the spool decorators ---------------------------------------------------------------
    @overload
    def spool(self, f: Callable[..., Any], *, pass_arguments: bool = False,
              **options: Any) -> SpoolFunction: ...

    @overload
    def spool(self, f: None = None, *, pass_arguments: bool = False,
              **options: Any) -> Callable[[Callable[..., Any]], SpoolFunction]: ...

    def spool(self, f: Callable[..., Any] | None = None, *, pass_arguments: bool = False,
              **options: Any) -> Any:
        """Done when the function returns (SPOOL_OK); run again when it raises."""
        return self._decorate("spool", f, pass_arguments, options)

    @overload
    def spoolraw(self, f: Callable[..., Any], *, pass_arguments: bool = False,
                 **options: Any) -> SpoolFunction: ...

    @overload
    def spoolraw(self, f: None = None, *, pass_arguments: bool = False,
                 **options: Any) -> Callable[[Callable[..., Any]], SpoolFunction]: ...

    def spoolraw(self, f: Callable[..., Any] | None = None, *, pass_arguments: bool = False,
                 **options: Any) -> Any:
        """The function's return code decides: SPOOL_OK, SPOOL_RETRY or SPOOL_IGNORE."""
        return self._decorate("spoolraw", f, pass_arguments, options)

    @overload
    def spoolforever(self, f: Callable[..., Any], *, pass_arguments: bool = False,
                     **options: Any) -> SpoolFunction: ...

    @overload
    def spoolforever(self, f: None = None, *, pass_arguments: bool = False,
                     **options: Any) -> Callable[[Callable[..., Any]], SpoolFunction]: ...

    def spoolforever(self, f: Callable[..., Any] | None = None, *, pass_arguments: bool = False,
                     **options: Any) -> Any:
        """Runs again every `frequency` seconds after each run (SPOOL_RETRY), for ever."""
        return self._decorate("spoolforever", f, pass_arguments, options)

    def _decorate(self, kind: str, f: Callable[..., Any] | None, pass_arguments: bool,
                  options: dict[str, Any]) -> Any:
        if not isinstance(pass_arguments, bool):
            raise ConfigError(f"@{kind}: pass_arguments must be True or False")

        def register(fn: Callable[..., Any]) -> SpoolFunction:
            if isinstance(fn, SpoolFunction | Task):
                raise ConfigError(f"{fn!r} is already spooled or a task")
            return self._register(kind, fn, pass_arguments, options)

        return register if f is None else register(f)

    def _register(self, kind: str, fn: Callable[..., Any], pass_arguments: bool,
                  options: dict[str, Any]) -> SpoolFunction:
        opts = {**self.task_options, **options}
        for key in ("bind", "retry_on", "retry_delay"):
            if key in opts:
                raise ConfigError(f"@{kind}: option {key}= is set by the Spooler itself")
        name = opts.pop("name", None) or f"{fn.__module__}.{fn.__name__}"
        retries = opts.pop("retries", self.retries)
        holder: list[SpoolFunction] = []

        def run(ctx: TaskContext, payload: dict[str, Any]) -> int:
            return self._run(holder[0], ctx, payload)

        run.__module__ = fn.__module__
        run.__qualname__ = run.__name__ = getattr(fn, "__name__", "spooled")
        run.__doc__ = fn.__doc__
        task = self.app.task(name=name, retries=UNLIMITED if retries is None else retries,
                             retry_delay=self.frequency, retry_on=_Never, bind=True,
                             **opts)(run)
        spooled = SpoolFunction(self, fn, kind, pass_arguments, task)
        holder.append(spooled)
        self.functions[task.name] = spooled
        try:
            fn.spool = spooled.spool  # type: ignore[attr-defined]  # as uwsgidecorators does
        except (AttributeError, TypeError):
            pass
        return spooled

    def _run(self, spooled: SpoolFunction, ctx: TaskContext, payload: dict[str, Any]) -> int:
        """One run in a worker: call the function, then act on its return code."""
        try:
            if spooled.pass_arguments:
                value = spooled.fn(*payload.get("args", ()), **payload.get("kwargs", {}))
            else:
                arguments = dict(payload.get("dict", {}))
                if "body" in arguments:
                    arguments["body"] = _unpack(arguments["body"])
                arguments.setdefault("spooler_task_name", ctx.id)
                arguments.setdefault("ud_spool_func", spooled.fn.__name__)
                value = spooled.fn(arguments)
        except Exception as exc:
            if self.app.eager:
                raise  # eager: fail now; retrying without end would never return
            raise Retry(delay=self.frequency, exc=exc) from exc
        if spooled.kind == "spool":
            return SPOOL_OK
        if spooled.kind == "spoolforever":
            code = SPOOL_RETRY
        elif isinstance(value, bool) or not isinstance(value, int):
            bad = TypeError(f"a @spoolraw function must return SPOOL_OK, SPOOL_RETRY or "
                            f"SPOOL_IGNORE, not {value!r}")
            if self.app.eager:
                raise bad
            raise Retry(delay=self.frequency, exc=bad)
        else:
            code = value
        if code == SPOOL_OK:
            return SPOOL_OK
        if code == SPOOL_IGNORE:
            raise Reject(f"{spooled.name} returned SPOOL_IGNORE")
        if not self.app.eager:
            spooled.respool(payload, ctx.queue)
        return SPOOL_RETRY

    # --- timers ---------------------------------------------------------------------------
    def timer(self, secs: float, *, signum: int | None = None, target: str = "",
              **options: Any) -> Callable[[Callable[..., Any]], Task[Any, Any]]:
        """`@timer(secs)`: run every `secs` seconds on the workers; the function receives the
        signal number (`signum=`, else the next free one). `target` is accepted and ignored:
        workers run it."""
        num = self._signum(signum)
        return self.app.periodic(every=secs, args=(num,), **options)

    rbtimer = timer  # uWSGI's red-black-tree timer: same schedule here

    def cron(self, minute: int, hour: int, day: int, month: int, dayweek: int, *,
             signum: int | None = None, target: str = "", tz: str | None = None,
             **options: Any) -> Callable[[Callable[..., Any]], Task[Any, Any]]:
        """`@cron(minute, hour, day, month, dayweek)` with uWSGI's -1 ("every") and -N ("every
        N"); local time unless `tz=`."""
        fields = []
        for label, value in (("minute", minute), ("hour", hour), ("day", day),
                             ("month", month), ("dayweek", dayweek)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"@cron: {label} must be an integer, not {value!r}")
            fields.append("*" if value == -1 else f"*/{-value}" if value < 0 else str(value))
        num = self._signum(signum)
        return self.app.periodic(Cron(" ".join(fields)), tz=tz, args=(num,), **options)

    def _signum(self, signum: int | None) -> int:
        if signum is not None:
            return signum
        num = self._next_signum
        self._next_signum += 1
        return num


def _schedule(name: str, keys: Mapping[str, Any]) -> dict[str, Any]:
    """apply_async options from the special keys `at`, `priority` and `spooler`."""
    options: dict[str, Any] = {}
    if keys.get("at") is not None:
        try:
            at = float(keys["at"])
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: at= must be a unix time, not {keys['at']!r}") from None
        options["eta"] = datetime.fromtimestamp(at, UTC)
    if keys.get("priority") is not None:
        try:
            options["priority"] = -int(keys["priority"])  # uWSGI: lower runs first
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: priority= must be a whole number, "
                              f"not {keys['priority']!r}") from None
    if keys.get("spooler") is not None:
        options["queue"] = _text(keys["spooler"])
    return options


def _text(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return value
    return value


def _pack(body: Any) -> Any:
    if isinstance(body, bytes | bytearray):
        return {_BYTES: base64.b64encode(bytes(body)).decode("ascii")}
    return body


def _unpack(body: Any) -> Any:
    if isinstance(body, dict) and set(body) == {_BYTES}:
        return base64.b64decode(body[_BYTES])
    return body
