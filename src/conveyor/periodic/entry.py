"""`@app.periodic`: a task plus its schedule, and what turns one tick into one message.

A tick is named `<task>@<tick time in UTC>` (e.g. `shop.cleanup@2025-03-09T07:30:00Z`); that
name is both the message's id (so `app.result(...)` finds a tick's outcome) and its dedup key
(so however many schedulers enqueue the tick, the backend writes it once).
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from ..backends.base import Message
from ..errors import ConfigError
from ..task import Task, TaskContext, seconds
from .schedule import Cron, Schedule, longest_gap, make_schedule

if TYPE_CHECKING:
    from ..app import Conveyor

log = logging.getLogger("conveyor.periodic")

#: How long a tick's dedup key is kept after the tick ran, beyond the time to the next tick:
#: far above any clock skew between workers, so a late scheduler cannot enqueue it again.
KEY_MARGIN = 3600.0
#: With catch_up=False, a tick not started within this many seconds of its time (or before
#: the next tick, if that comes sooner) counts as missed and is dropped.
MISSED_AFTER = 60.0
#: Reference start for sampling a schedule's gaps (decoration must not depend on the clock).
_SAMPLE_FROM = datetime(2024, 1, 1, tzinfo=UTC).timestamp()


def tick_id(task: str, tick: float) -> str:
    when = datetime.fromtimestamp(tick, UTC)
    spec = "seconds" if when.microsecond == 0 else "microseconds"
    return f"{task}@{when.replace(tzinfo=None).isoformat(timespec=spec)}Z"


def parse_tick_id(task: str, task_id: str) -> float | None:
    """The tick time in a tick's id, or None when `task_id` is not a tick of `task`."""
    name, sep, when = task_id.rpartition("@")
    if not sep or name != task or not when.endswith("Z"):
        return None
    try:
        return datetime.fromisoformat(when[:-1]).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class PeriodicEntry:
    """One periodic task: what to call, when, and how ticks behave."""

    task: Task[Any, Any]
    schedule: Schedule
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    catch_up: bool = True
    overlap: bool = True
    user_bind: bool = False  # the function itself wants a TaskContext

    @property
    def name(self) -> str:
        return self.task.name

    def tick_id(self, tick: float) -> str:
        return tick_id(self.name, tick)

    def message(self, app: Conveyor, tick: float, now: float) -> Message:
        """The message of one tick: ready at the tick time, deduplicated by its name."""
        following = self.schedule.next_after(tick)
        gap = following - tick if math.isfinite(following) else 366 * 86400.0
        expires: datetime | None = None
        if not self.catch_up:
            expires = datetime.fromtimestamp(tick + min(MISSED_AFTER, gap), UTC)
        env, body = app._envelope(self.task, self.args, self.kwargs, now=now,
                                  task_id=self.tick_id(tick), expires=expires)
        return Message(env.id, env.queue, body, env.priority, tick, dedup_key=env.id,
                       dedup_retention=gap + KEY_MARGIN)

    def on_time(self, tick: float, now: float) -> bool:
        """Whether a tick starting at `now` still counts (always, with catch_up)."""
        if self.catch_up:
            return True
        return now < tick + min(MISSED_AFTER, self.schedule.next_after(tick) - tick)

    def superseded(self, app: Conveyor, tick: float, now: float) -> float | None:
        """A later tick that is due too and written, if any: then this (late) tick is skipped,
        so that ticks missed while no worker ran make one run. Costs a backend read only for a
        tick that starts after the next one came due (never in normal operation)."""
        tick = self.schedule.next_after(tick - 0.5)  # the schedule's own float for it
        following = self.schedule.next_after(tick)
        if following > now:
            return None
        later = {following, *self.schedule.ticks_until(now, 2)}
        own = self.tick_id(tick)
        ids = {self.tick_id(t): t for t in sorted(later) if tick < t <= now}
        ids.pop(own, None)
        found = app.backend.get_results(list(ids), now)
        return max((t for i, t in ids.items() if i in found), default=None)

    # --- the worker side: superseded ticks, overlap=False -------------------------------------
    @contextmanager
    def guard(self, app: Conveyor, ctx: TaskContext) -> Iterator[bool]:
        """Yield whether this run may go ahead. A late tick superseded by a later one that is
        due too is skipped. With overlap=False a tick holds the lock
        `conveyor:periodic:<task>:running` while it runs, renewed every lease/3 by a thread (so
        it lapses only when the holder died or hung for a whole lease); a tick that finds it
        held by another tick is skipped and logged."""
        tick = parse_tick_id(self.name, ctx.id)
        if tick is None:  # not a tick (.delay(), a direct call): just run
            yield True
            return
        later = self.superseded(app, tick, app.clock.now())
        if later is not None:
            log.info("periodic %s: tick %s skipped: the tick of %s is due too and runs "
                     "instead (missed ticks run once)", self.name, _local(tick), _local(later))
            yield False
            return
        if self.overlap:
            yield True
            return
        key, ttl = f"conveyor:periodic:{self.name}:running", app.lease
        if not app.backend.try_lock(key, ctx.id, ttl, app.clock.now()):
            log.warning("periodic %s: tick %s skipped: an earlier tick is still running "
                        "(overlap=False)", self.name, _local(tick))
            yield False
            return
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(ttl / 3):
                try:
                    if not app.backend.try_lock(key, ctx.id, ttl, app.clock.now()):
                        log.warning("periodic %s: lost the overlap lock of tick %s",
                                    self.name, _local(tick))
                        return
                except Exception as exc:  # an outage: try again on the next turn
                    log.warning("periodic %s: could not renew the overlap lock: %s",
                                self.name, exc)

        keeper = threading.Thread(target=renew, name=f"conveyor-overlap-{self.name}",
                                  daemon=True)
        keeper.start()
        try:
            yield True
        finally:
            stop.set()
            keeper.join()
            try:
                app.backend.unlock(key, ctx.id)
            except Exception as exc:  # it lapses after one lease
                log.warning("periodic %s: could not release the overlap lock: %s",
                            self.name, exc)


def _code(fn: Callable[..., Any]) -> Any:
    fn = getattr(fn, "__wrapped__", fn)
    return getattr(fn, "__code__", fn)


def _local(tick: float) -> str:
    return datetime.fromtimestamp(tick).strftime("%Y-%m-%d %H:%M:%S")


def periodic_decorator(app: Conveyor, schedule: str | Cron | None = None, *,
                       every: float | timedelta | None = None, tz: str | tzinfo | None = None,
                       catch_up: bool = True, overlap: bool = True,
                       args: Sequence[Any] = (),
                       kwargs: dict[str, Any] | None = None, **options: Any,
                       ) -> Callable[[Callable[..., Any]], Task[Any, Any]]:
    """What `app.periodic(...)` returns. The schedule is checked here, at decoration."""
    if callable(schedule) and not isinstance(schedule, Cron):
        raise ConfigError("@app.periodic needs a schedule: @app.periodic('*/5 * * * *'), "
                          "@app.periodic(crontab(...)) or @app.periodic(every=30)")
    sched = make_schedule(schedule, every, tz)
    for flag, value in (("catch_up", catch_up), ("overlap", overlap)):
        if not isinstance(value, bool):
            raise ConfigError(f"periodic {flag}= must be True or False, not {value!r}")
    if not isinstance(args, list | tuple):
        raise ConfigError(f"periodic args= must be a tuple or list, not {args!r}")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise ConfigError(f"periodic kwargs= must be a dict, not {kwargs!r}")
    call_args, call_kwargs = tuple(args), dict(kwargs or {})

    def register(fn: Callable[..., Any]) -> Task[Any, Any]:
        if isinstance(fn, Task):
            raise ConfigError(f"{fn.name} is already a task: put @app.periodic on the function "
                              "instead of @app.task")
        opts = dict(options)
        user_bind = bool(opts.pop("bind", False))
        name = opts.get("name") or f"{fn.__module__}.{fn.__name__}"
        existing = app.tasks.get(name)
        if existing is not None and _code(existing.fn) is not _code(fn):
            raise ConfigError(f"two different functions are registered as task {name!r}: "
                              "give one of them name=")
        if opts.get("result_ttl") is None:
            # Keep a tick's result until well after the next tick, so `conveyor periodic`
            # can show the last run of a weekly job too.
            gap = longest_gap(sched, _SAMPLE_FROM)
            opts["result_ttl"] = max(app.result_ttl, 2 * gap + KEY_MARGIN)
        else:
            seconds(opts["result_ttl"], "result_ttl")
        holder: list[PeriodicEntry] = []
        wrapper = _wrap(app, fn, user_bind, holder)
        task = app.task(bind=True, **opts)(wrapper)
        entry = PeriodicEntry(task, sched, call_args, call_kwargs, catch_up, overlap, user_bind)
        holder.append(entry)
        try:  # arguments that do not fit or cannot be serialized fail here, not at 3 a.m.
            app._envelope(task, call_args, call_kwargs, now=0.0)
        except TypeError as exc:
            app.tasks.pop(task.name, None)
            raise ConfigError(f"periodic {exc}") from None
        except Exception:
            app.tasks.pop(task.name, None)
            raise
        app.periodic_tasks[task.name] = entry
        return task

    return register


def _wrap(app: Conveyor, fn: Callable[..., Any], user_bind: bool,
          holder: list[PeriodicEntry]) -> Callable[..., Any]:
    """The function registered as the task: it takes the TaskContext (bind=True) to know which
    tick it runs, applies overlap=False, and calls the user's function (with the context only
    if it asked for one)."""
    params = list(inspect.signature(fn).parameters.values())
    if user_bind:
        if not params:
            raise ConfigError(f"{fn.__name__}: bind=True needs a first parameter for the "
                              "TaskContext")
        signature = inspect.Signature(params)
    else:
        ctx_param = inspect.Parameter("_conveyor_ctx", inspect.Parameter.POSITIONAL_ONLY)
        signature = inspect.Signature([ctx_param, *params])

    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def run_async(ctx: TaskContext, *args: Any, **kwargs: Any) -> Any:
            with holder[0].guard(app, ctx) as go:
                if not go:
                    return None
                return await (fn(ctx, *args, **kwargs) if user_bind else fn(*args, **kwargs))
        wrapper: Callable[..., Any] = run_async
    else:
        @functools.wraps(fn)
        def run(ctx: TaskContext, *args: Any, **kwargs: Any) -> Any:
            with holder[0].guard(app, ctx) as go:
                if not go:
                    return None
                return fn(ctx, *args, **kwargs) if user_bind else fn(*args, **kwargs)
        wrapper = run
    wrapper.__signature__ = signature  # type: ignore[attr-defined]
    return wrapper
