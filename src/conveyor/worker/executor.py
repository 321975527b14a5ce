"""One delivery: decode -> find the task -> run it -> one settlement. No threads, no I/O
beyond what the task does, so it is tested directly."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import tracing
from ..backends.base import (
    FAILURE,
    REVOKED,
    SUCCESS,
    Ack,
    Bury,
    Delivery,
    Release,
    Settlement,
    StoredResult,
)
from ..envelope import Envelope
from ..errors import Reject, Retry, SerializationError, TaskTimeout, WorkerLost
from ..middleware import ExecuteCall, chain_execute
from ..retry import EXPLICIT_RETRY_BUDGET, LOST_DELIVERY_GRACE
from ..task import Task, TaskContext
from . import timeouts
from .progress import progress_reporter

if TYPE_CHECKING:
    from ..app import Conveyor

log = logging.getLogger("conveyor.worker")


@dataclass(slots=True)
class Prepared:
    """A delivery that decoded and names a known task: ready to run."""

    delivery: Delivery
    envelope: Envelope
    task: Task[Any, Any]
    attempt: int
    retries: int
    ctx: TaskContext
    value: Any = None  # what the task returned, once it succeeded (for workflow links)


@dataclass(frozen=True, slots=True)
class Finished:
    """What running a delivery produced: the settlement, plus a line for the log."""

    settlement: Settlement
    outcome: str  # "succeeded", "retry", "failed", "rejected", "dead", "expired"
    detail: str = ""
    task: str = ""  # the task's name, when known before it ran (for the counters)


class Executor:
    def __init__(self, app: Conveyor) -> None:
        self.app = app
        self._call = chain_execute(app.middleware, timeouts.guard(_call_task))  # soft limits

    # --- before running -------------------------------------------------------------------
    def prepare(self, d: Delivery) -> Prepared | Finished:
        app = self.app
        try:
            env = Envelope.from_dict(app.codec.decode(d.body))
        except SerializationError as exc:
            reason = str(exc)
            if not reason.startswith("bad signature"):
                reason = f"undecodable message: {reason}"
            return self._dead(d, reason, "SerializationError", str(exc))
        if env.flow is not None:  # a step of a workflow (worker/flow.py)
            from .flow import prepare_step

            return prepare_step(self, d, env)
        return self.prepare_envelope(d, env)

    def prepare_envelope(self, d: Delivery, env: Envelope) -> Prepared | Finished:
        app = self.app
        task = app.tasks.get(env.task)
        if task is None:
            return self._dead(d, f"unknown task {env.task!r}: not registered in this worker",
                              "UnknownTask", f"task {env.task!r} is not registered", env.task)
        now = app.clock.now()
        # "Not started by then": only a first delivery can expire; a retry of a task that
        # did start runs on.
        if env.expires_at is not None and d.delivery_count <= 1 and env.expires_at <= now:
            data = app.encode_failure("TaskExpired", "expired before it started", "", task.name)
            return Finished(Ack(d.id, d.token, data, REVOKED, self._ttl(task)), "expired",
                            task=task.name)
        retries = task.options.retry.retries if env.retries is None else env.retries
        if d.delivery_count > retries + 1 + LOST_DELIVERY_GRACE:
            return self._dead(d, f"worker lost: delivered {d.delivery_count} times without an "
                                 "outcome", "WorkerLost", "the worker running it died", task.name)
        try:
            task.check_arguments(env.args, env.kwargs)
        except TypeError as exc:
            return self._dead(d, f"arguments do not fit {task.name}: {exc}", "TypeError",
                              str(exc), task.name)
        attempt = max(1, d.delivery_count)
        ctx = TaskContext(env.id, task.name, attempt, max(0, retries - (attempt - 1)), env.queue)
        ctx.reporter = progress_reporter(app, d)  # ctx.progress(...) (progress.py)
        return Prepared(d, env, task, attempt, retries, ctx)

    def _dead(self, d: Delivery, reason: str, exc_type: str, message: str,
              task: str = "") -> Finished:
        data = self.app.encode_failure(exc_type, message, "", task)
        return Finished(Bury(d.id, d.token, reason, data, self.app.result_ttl), "dead", reason,
                        task)

    def _ttl(self, task: Task[Any, Any]) -> float:
        ttl = task.options.result_ttl
        return self.app.result_ttl if ttl is None else ttl

    # --- running --------------------------------------------------------------------------
    def run(self, p: Prepared) -> Finished:
        span = tracing.start_run(p.envelope, p.attempt)  # None unless OpenTelemetry is used
        if span is None:
            return self._run_step(p)
        try:
            fin = self._run_step(p)
        except BaseException as exc:
            span.end(None, exc)
            raise
        span.end(fin)
        return fin

    def _run_step(self, p: Prepared) -> Finished:
        fin = self._run(p)
        if p.envelope.flow is not None:  # enqueue what comes next in its workflow
            from .flow import finish_step

            return finish_step(self, p, fin)
        return fin

    def _run(self, p: Prepared) -> Finished:
        task, env = p.task, p.envelope
        try:
            value = self._call(ExecuteCall(task, p.ctx, env.args, env.kwargs))
        except (Exception, SystemExit, KeyboardInterrupt) as exc:
            return self.failed(p, exc)
        return self.succeeded(p, value)

    def failed(self, p: Prepared, exc: BaseException) -> Finished:
        """The outcome of a run that raised `exc` (also used by the asyncio pool)."""
        task = p.task
        if isinstance(exc, Retry):
            return self.retry_or_fail(p, exc.exc or exc, explicit=True, delay=exc.delay)
        if isinstance(exc, Reject):
            data = self.app.encode_failure("Reject", exc.reason, "", task.name)
            return Finished(Bury(p.delivery.id, p.delivery.token, f"rejected: {exc.reason}",
                                 data, self._ttl(task)), "rejected", exc.reason)
        tb = "".join(traceback.format_exception(exc))
        retryable = isinstance(exc, task.options.retry_on)
        return self.retry_or_fail(p, exc, tb=tb, retryable=retryable)

    def succeeded(self, p: Prepared, value: Any) -> Finished:
        """The outcome of a run that returned `value` (also used by the asyncio pool)."""
        task = p.task
        p.value = value
        if not task.options.store_result:
            return Finished(Ack(p.delivery.id, p.delivery.token, None), "succeeded")
        try:
            data = self.app.encode_value(value, task.name)
        except SerializationError as exc:
            msg = f"the result of {task.name} cannot be serialized: {exc}"
            return self._dead(p.delivery, msg, "SerializationError", msg, task.name)
        return Finished(Ack(p.delivery.id, p.delivery.token, data, SUCCESS, self._ttl(task)),
                        "succeeded")

    def retry_or_fail(self, p: Prepared, exc: BaseException, *, tb: str = "",
                      retryable: bool = True, explicit: bool = False,
                      delay: float | None = None) -> Finished:
        """Release for another attempt while retries remain, else dead-letter with FAILURE."""
        return settle_failure(self.app, p.delivery, p.task, p.attempt, p.retries,
                              type(exc).__name__, str(exc), tb, retryable=retryable,
                              explicit=explicit, delay=delay)


def settle_failure(app: Conveyor, d: Delivery, task: Task[Any, Any], attempt: int, retries: int,
                   exc_type: str, message: str, tb: str = "", *, retryable: bool = True,
                   explicit: bool = False, delay: float | None = None) -> Finished:
    """The retry decision, shared by the executor and the supervisor (timeouts, lost
    children)."""
    budget = retries if (retries or not explicit) else EXPLICIT_RETRY_BUDGET
    if retryable and attempt <= budget:
        wait = task.options.retry.delay_for(attempt) if delay is None else max(0.0, delay)
        detail = f"{exc_type}: {message}; retry {attempt}/{budget} in {wait:.2f}s"
        return Finished(Release(d.id, d.token, app.clock.now() + wait), "retry", detail)
    data = app.encode_failure(exc_type, message, tb, task.name)
    ttl = task.options.result_ttl
    if retryable and budget:
        reason = f"failed after {attempt} attempts: {exc_type}: {message}"
    else:
        reason = f"{exc_type}: {message}"
    return Finished(Bury(d.id, d.token, reason, data, app.result_ttl if ttl is None else ttl),
                    "failed", reason)


def timeout_failure(app: Conveyor, d: Delivery, task: Task[Any, Any], attempt: int,
                    retries: int, limit: float | None) -> Finished:
    return settle_failure(app, d, task, attempt, retries, TaskTimeout.__name__,
                          f"{task.name} ran past its timeout of {limit}s and was stopped")


def lost_failure(app: Conveyor, d: Delivery, task: Task[Any, Any], attempt: int, retries: int,
                 how: str) -> Finished:
    return settle_failure(app, d, task, attempt, retries, WorkerLost.__name__,
                          f"worker lost: {how}")


def _call_task(call: ExecuteCall) -> Any:
    """The innermost step: call the function (with its context when bound), run a coroutine
    to its end."""
    task = call.task
    if task.options.bind:
        value = task.fn(call.ctx, *call.args, **call.kwargs)
    else:
        value = task.fn(*call.args, **call.kwargs)
    if task.is_async:
        value = run_coroutine(value)
    return value


# Set by the asyncio pool (aio.py) around a run whose execute middleware it calls in a thread:
# the coroutine of the async task then runs on the pool's event loop, not on a new one.
LOOP_RUNNER: contextvars.ContextVar[Callable[[Any], Any] | None] = contextvars.ContextVar(
    "conveyor_loop_runner", default=None)


def run_coroutine(coro: Any) -> Any:
    """Run an async task to completion: on a new event loop here, or, when this thread already
    runs a loop (drain() or eager mode inside async code), on a new loop in a helper thread."""
    runner = LOOP_RUNNER.get()
    if runner is not None:
        return runner(coro)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="conveyor-async") as pool:
        return pool.submit(asyncio.run, coro).result()


def execute(executor: Executor, d: Delivery) -> Finished:
    prepared = executor.prepare(d)
    if isinstance(prepared, Finished):
        return prepared
    return executor.run(prepared)


def run_inline(app: Conveyor, body: bytes, task_id: str) -> StoredResult:
    """Eager mode: decode what would have been enqueued and run it here, retries included
    (without waiting their delay)."""
    executor = Executor(app)
    count = 0
    while True:
        count += 1
        d = Delivery(task_id, "eager", body, 0, count, "eager", 0.0)
        s = execute(executor, d).settlement
        if isinstance(s, Release):
            continue
        if isinstance(s, Ack):
            return StoredResult(task_id, s.state, s.data, app.clock.now())
        return StoredResult(task_id, FAILURE, s.data, app.clock.now())


def drain(app: Conveyor, queues: list[str] | None) -> int:
    """Run ready tasks in this process until none is left (see Conveyor.drain)."""
    executor = Executor(app)
    backend, clock = app.backend, app.clock
    worker = f"drain:{app.worker_id()}"
    pending_retries: dict[str, float] = {}
    ran = 0
    while True:
        batch = backend.claim(queues, worker, clock.now(), app.lease, 16)
        if not batch:
            now = clock.now()
            states = backend.get_results(list(pending_retries), now)
            pending_retries = {i: t for i, t in pending_retries.items()
                               if i in states and states[i].state not in (SUCCESS, FAILURE,
                                                                          REVOKED)}
            if not pending_retries:
                return ran
            clock.sleep(max(0.0, min(pending_retries.values()) - now))
            time.sleep(0)  # let other threads (a FakeClock driver) run
            continue
        for d in batch:
            fin = execute(executor, d)
            ran += 1
            backend.settle([fin.settlement], clock.now())
            if isinstance(fin.settlement, Release):
                pending_retries[d.id] = fin.settlement.ready_at
