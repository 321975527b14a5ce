"""Handles on enqueued tasks: state, waiting, values and remote errors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .backends.base import (
    FAILURE,
    PENDING,
    REVOKED,
    SUCCESS,
    TERMINAL_STATES,
    StoredResult,
)
from .errors import ConfigError, TaskFailed, TaskRevoked, TimeoutError

if TYPE_CHECKING:
    from .app import Conveyor

_NO_RESULT = "no result stored"


class Result:
    """A task's outcome, read from the backend. Cheap to create from an id in any process."""

    __slots__ = ("app", "id", "task_name")

    def __init__(self, app: Conveyor, id: str, task_name: str | None = None) -> None:
        self.app = app
        self.id = id
        self.task_name = task_name

    def __repr__(self) -> str:
        return f"<Result {self.task_name or 'task'} {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Result) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def _stored(self) -> StoredResult | None:
        return self.app.backend.get_results([self.id], self.app.clock.now()).get(self.id)

    @property
    def state(self) -> str:
        stored = self._stored()
        return PENDING if stored is None else stored.state

    def ready(self) -> bool:
        """True once the task finished one way or another."""
        return self.state in TERMINAL_STATES

    def successful(self) -> bool:
        return self.state == SUCCESS

    def failed(self) -> bool:
        return self.state == FAILURE

    @property
    def progress(self) -> dict[str, Any] | None:
        """The latest `ctx.progress(...)` report, `{"current", "total", **info}`, while the
        task runs (state PROGRESS); None before it reports and once it finished."""
        from .control import decode_progress

        return decode_progress(self.app, self._stored())

    def revoke(self, terminate: bool = False) -> bool:
        """A task not started yet never runs (state REVOKED; `get()` raises `TaskRevoked`).
        A running one finishes this run but is not run again, unless `terminate=True`: then
        it is stopped (process pool: its child is killed and replaced; thread pool:
        `ctx.cancelled` becomes True) and recorded REVOKED. False when there was nothing to
        revoke (finished, a dead letter, or unknown). See docs/control.md."""
        from .control import revoke

        return revoke(self.app, [self.id], terminate, self.task_name)[0]

    def _check_stores(self) -> None:
        task = self.app.tasks.get(self.task_name or "")
        if task is not None and not task.options.store_result:
            raise ConfigError(f"task {task.name} has store_result=False: its result is never "
                              "stored, so there is nothing to wait for")

    def get(self, timeout: float | None = None, propagate: bool = True,
            on_progress: Callable[[dict[str, Any]], Any] | None = None) -> Any:
        """Wait for the value. Raises `TaskFailed` (or returns it with propagate=False) when the
        task failed, and `conveyor.TimeoutError` when `timeout` seconds pass first."""
        self._check_stores()
        if on_progress is not None:
            from .control import wait_with_progress

            found = wait_with_progress(self.app, self.id, timeout, on_progress)
        else:
            found = self.app.backend.wait([self.id], timeout, self.app.clock.now).get(self.id)
        if found is None or found.state not in TERMINAL_STATES:
            state = PENDING if found is None else found.state
            raise TimeoutError(f"task {self.id} not finished after {timeout}s (state {state})")
        return self.app.decode_outcome(found, self.task_name, propagate)

    async def aget(self, timeout: float | None = None, propagate: bool = True,
                   on_progress: Callable[[dict[str, Any]], Any] | None = None) -> Any:
        """`get` for asyncio code: waits in a thread, so the event loop keeps running (and
        `on_progress` is called in that thread)."""
        return await asyncio.to_thread(self.get, timeout, propagate, on_progress)


class EagerResult(Result):
    """The outcome of a task run inline (eager mode): already known, never stored."""

    __slots__ = ("_outcome",)

    def __init__(self, app: Conveyor, id: str, task_name: str, outcome: StoredResult) -> None:
        super().__init__(app, id, task_name)
        self._outcome = outcome

    def _stored(self) -> StoredResult | None:
        return self._outcome

    def get(self, timeout: float | None = None, propagate: bool = True,
            on_progress: Callable[[dict[str, Any]], Any] | None = None) -> Any:
        return self.app.decode_outcome(self._outcome, self.task_name, propagate)

    def revoke(self, terminate: bool = False) -> bool:
        return False  # it ran already


class ResultGroup:
    """Results of several tasks; `get` returns their values in the order they were enqueued."""

    def __init__(self, app: Conveyor, results: Sequence[Result]) -> None:
        self.app = app
        self.results = list(results)

    def __iter__(self) -> Iterator[Result]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, index: int) -> Result:
        return self.results[index]

    def __repr__(self) -> str:
        return f"<ResultGroup of {len(self.results)}>"

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.results]

    def _states(self) -> dict[str, StoredResult]:
        if self.results and isinstance(self.results[0], EagerResult):
            return {r.id: r._stored() for r in self.results}  # type: ignore[misc]
        return self.app.backend.get_results(self.ids, self.app.clock.now())

    def completed_count(self) -> int:
        """How many finished successfully."""
        return sum(1 for s in self._states().values() if s.state == SUCCESS)

    def ready(self) -> bool:
        states = self._states()
        return all(i in states and states[i].state in TERMINAL_STATES for i in self.ids)

    def get(self, timeout: float | None = None, propagate: bool = True) -> list[Any]:
        if self.results and not isinstance(self.results[0], EagerResult):
            for r in self.results:
                r._check_stores()
            found = self.app.backend.wait(self.ids, timeout, self.app.clock.now)
            if not all(i in found and found[i].state in TERMINAL_STATES for i in self.ids):
                done = sum(1 for s in found.values() if s.state in TERMINAL_STATES)
                raise TimeoutError(f"{len(self.ids) - done} of {len(self.ids)} tasks not "
                                   f"finished after {timeout}s")
        else:
            found = self._states()
        return [self.app.decode_outcome(found[r.id], r.task_name, propagate)
                for r in self.results]

    async def aget(self, timeout: float | None = None, propagate: bool = True) -> list[Any]:
        return await asyncio.to_thread(self.get, timeout, propagate)

    def revoke(self, terminate: bool = False) -> list[bool]:
        """`Result.revoke` for each, in one backend call."""
        if not self.results or isinstance(self.results[0], EagerResult):
            return [False] * len(self.results)
        from .control import revoke

        return revoke(self.app, self.ids, terminate, self.results[0].task_name)


def failure_from(payload: Any, task_id: str, task_name: str | None, state: str) -> TaskFailed:
    """Build the TaskFailed a producer sees from a stored failure payload."""
    if isinstance(payload, dict):
        kind = TaskRevoked if state == REVOKED else TaskFailed
        return kind(task_id, str(payload.get("exc_type", "Error")),
                    str(payload.get("exc_message", "")), str(payload.get("traceback", "")),
                    str(payload.get("task") or task_name or ""))
    if state == REVOKED:
        return TaskRevoked(task_id, "TaskRevoked", "revoked", "", task_name or "")
    return TaskFailed(task_id, "TaskFailed", _NO_RESULT, "", task_name or "")
