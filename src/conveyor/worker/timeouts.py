"""Soft time limits, and the thread pool's best effort at its hard one.

`soft_timeout=S` raises `conveyor.TaskTimeout` inside the task S seconds after it started, so
it can clean up before the hard `timeout` (the process pool kills the child at the hard limit)
and sets `ctx.cancelled`.

- Process pool: the child runs its task in its main thread, so an interval timer
  (`signal.setitimer`, SIGALRM) raises `TaskTimeout` there, also out of `time.sleep` and other
  blocking calls that Python's signal handling interrupts. An `async def` task sees its
  coroutine cancelled (`asyncio.CancelledError` inside it) and then fails with `TaskTimeout`.
- Thread pool: a thread cannot be interrupted reliably. At the soft limit `ctx.cancelled` is
  set and, best effort, `TaskTimeout` is injected into the thread
  (`PyThreadState_SetAsyncExc`), which takes effect only when the thread next runs Python
  bytecode: not while it blocks in C (a socket read, a lock, a C extension). At the hard limit
  the task is settled as `TaskTimeout` by the pool and the same best-effort injection is made;
  the thread may run on until the task returns, its outcome then discarded. Tasks that must
  stop on time in threads check `ctx.cancelled`.
- Asyncio pool (aio.py): `async def` tasks are cancelled by the pool's loop, not here; its
  plain functions run in threads and get thread mode.
- Elsewhere (`app.drain()`, eager mode) no time limit applies.

Injections happen only while the task's own function runs (under a lock shared with the
wrapper's exit), so they never land in the worker's code.
"""

from __future__ import annotations

import ctypes
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import TaskTimeout
from ..middleware import ExecuteCall
from ..task import TaskContext

_mode: str | None = None  # "signals" (process-pool child), "threads" (thread pool) or None
_lock = threading.Lock()


@dataclass(slots=True)
class _Running:
    """A task inside its function, with a time limit."""

    thread: int
    ctx: TaskContext
    name: str
    soft: float | None
    soft_at: float | None  # monotonic deadline of the soft limit
    fired: bool = False


_running: dict[int, _Running] = {}  # thread ident -> its running task (thread mode)
_current: _Running | None = None  # the main thread's running task (signal mode)


def use_signals() -> None:
    """In a process-pool child, before its slot starts: soft limits by SIGALRM."""
    global _mode
    signal.signal(signal.SIGALRM, _on_alarm)
    _mode = "signals"


def use_threads() -> None:
    """In the thread pool, before its slots start: soft limits by `fire_due`."""
    global _mode
    _mode = "threads"


def guard(core: Callable[[ExecuteCall], Any]) -> Callable[[ExecuteCall], Any]:
    """`core` (the call of the task's function) with the time limits of this process's pool;
    `core` itself where there is no pool."""
    if _mode is None:
        return core

    def call(c: ExecuteCall) -> Any:
        limits = c.task.options.limits
        soft = limits.soft_timeout if limits is not None else None
        if _mode == "signals":
            if soft is None or threading.current_thread() is not threading.main_thread():
                return core(c)
            return _with_alarm(core, c, soft)
        if soft is None and c.task.options.timeout is None:
            return core(c)
        return _with_watch(core, c, soft)
    return call


def soft_message(name: str, soft: float | None) -> str:
    return f"{name} ran past its soft timeout of {soft:g}s"


# --- signal mode --------------------------------------------------------------------------
def _on_alarm(signum: int, frame: Any) -> None:
    r = _current
    if r is None or r.fired:
        return
    r.fired = True
    r.ctx.cancelled = True
    raise TaskTimeout(soft_message(r.name, r.soft))


def _with_alarm(core: Callable[[ExecuteCall], Any], c: ExecuteCall, soft: float) -> Any:
    global _current
    _current = _Running(0, c.ctx, c.task.name, soft, None)
    signal.setitimer(signal.ITIMER_REAL, soft)
    try:
        return core(c)
    finally:
        _current = None
        signal.setitimer(signal.ITIMER_REAL, 0)


# --- thread mode --------------------------------------------------------------------------
def _with_watch(core: Callable[[ExecuteCall], Any], c: ExecuteCall, soft: float | None) -> Any:
    import time

    ident = threading.get_ident()
    r = _Running(ident, c.ctx, c.task.name, soft,
                 None if soft is None else time.monotonic() + soft)
    with _lock:
        _running[ident] = r
    try:
        return core(c)
    finally:
        with _lock:
            _running.pop(ident, None)
            if r.fired:  # an injection not delivered yet must not land outside the task
                _inject(ident, None)


def fire_due(now_monotonic: float) -> None:
    """Thread pool: raise `TaskTimeout` (best effort) in every task past its soft limit."""
    with _lock:
        for r in _running.values():
            if not r.fired and r.soft_at is not None and now_monotonic >= r.soft_at:
                r.fired = True
                r.ctx.cancelled = True
                _inject(r.thread, _timeout_class(soft_message(r.name, r.soft)))


def interrupt(ctx: TaskContext, message: str) -> None:
    """Thread pool, hard limit: raise `TaskTimeout` (best effort) in the thread running the
    task of `ctx`, if it is still inside the task's function."""
    with _lock:
        for r in _running.values():
            if r.ctx is ctx:
                r.fired = True
                _inject(r.thread, _timeout_class(message))


def _inject(thread: int, exc: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread),
                                               ctypes.py_object(exc) if exc else None)


def _timeout_class(message: str) -> type[TaskTimeout]:
    """An injected exception is a class, raised without arguments: a `TaskTimeout` (by name
    too, in results) whose message is fixed."""

    class _Timeout(TaskTimeout):
        def __init__(self, *args: object) -> None:
            super().__init__(*(args or (message,)))

    _Timeout.__name__ = _Timeout.__qualname__ = "TaskTimeout"
    _Timeout.__module__ = TaskTimeout.__module__
    return _Timeout
