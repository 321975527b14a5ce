"""The one extension mechanism: middleware around enqueue and around a task's execution.

A middleware wraps the next step (`call_next`) and may look at, change, refuse or time what
passes through. It also declares the task options it owns: `@app.task(my_option=...)` is
accepted only when an installed middleware owns `my_option` (the value lands in
`task.options.extra`), so a misspelt option still fails when the task is decorated.

    class Timing(Middleware):
        options = frozenset({"slow_after"})

        def execute(self, call, call_next):
            t0 = time.perf_counter()
            try:
                return call_next(call)
            finally:
                limit = call.task.options.extra.get("slow_after")
                if limit is not None and time.perf_counter() - t0 > limit:
                    log.warning("%s was slow", call.task.name)

    app = Conveyor(middleware=[Timing()])

The first middleware in the list is the outermost. With none installed, the hot path pays
nothing for the mechanism.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .result import Result
    from .task import Task, TaskContext

C = TypeVar("C")
R = TypeVar("R")


@dataclass(slots=True)
class EnqueueCall:
    """One producer call on its way to the backend. Middleware may replace `args`, `kwargs`
    or the `apply_async` options in `options` before calling the next step."""

    task: Task[Any, Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ExecuteCall:
    """One run of a task in a worker (or in eager mode / drain)."""

    task: Task[Any, Any]
    ctx: TaskContext
    args: list[Any]
    kwargs: dict[str, Any]


class Middleware:
    """Base class: override `enqueue` and/or `execute`; both pass through by default."""

    options: frozenset[str] = frozenset()

    def enqueue(self, call: EnqueueCall, call_next: Callable[[EnqueueCall], Result]) -> Result:
        return call_next(call)

    def execute(self, call: ExecuteCall, call_next: Callable[[ExecuteCall], Any]) -> Any:
        return call_next(call)


def chain_enqueue(middleware: Sequence[Middleware],
                  core: Callable[[EnqueueCall], Result]) -> Callable[[EnqueueCall], Result]:
    """`core` wrapped by every middleware's `enqueue`, the first one outermost."""
    return _chain(middleware, "enqueue", core)


def chain_execute(middleware: Sequence[Middleware],
                  core: Callable[[ExecuteCall], Any]) -> Callable[[ExecuteCall], Any]:
    """`core` wrapped by every middleware's `execute`, the first one outermost."""
    return _chain(middleware, "execute", core)


def _chain(middleware: Sequence[Middleware], method: str, core: Callable[[C], R],
           ) -> Callable[[C], R]:
    step = core
    for m in reversed(middleware):
        if getattr(type(m), method) is not getattr(Middleware, method):  # overridden only
            step = functools.partial(getattr(m, method), call_next=step)
    return step
