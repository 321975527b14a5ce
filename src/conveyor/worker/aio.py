"""The asyncio pool (`--pool async`): up to N tasks at once on one event loop in this process.

- `async def` tasks run as coroutines on the loop; plain functions run in a thread (at most N,
  created as needed) so they never block it.
- The backend stays synchronous: every backend call (claim, settle, limits, revocation checks,
  the heartbeat) runs through `asyncio.to_thread`. One claimer coroutine claims up to the free
  room (at most MAX_CLAIM at once) and settles the outcomes gathered meanwhile in the same round
  trip (`settle_and_claim`); a settler coroutine sends outcomes while the claimer waits for
  work. Leases are extended by the same `LeaseKeeper` thread as in the other pools.
- Time limits: `soft_timeout` cancels the coroutine (`asyncio.CancelledError` inside it, so
  `finally` blocks clean up) and the run fails with `TaskTimeout` unless the task returns;
  `timeout` cancels it and settles `TaskTimeout` (retried while retries remain), giving the
  coroutine up to STOP_WAIT seconds to clean up first. `revoke(terminate=True)` cancels it
  and records REVOKED. A coroutine that never awaits blocks the loop and cannot be stopped: the
  lease is then the only guarantee. Plain functions get the thread pool's limits: best effort
  injection and `ctx.cancelled` (timeouts.py, control.py).
- Execute middleware is synchronous: when some is installed, an async task's middleware runs in
  a thread and its coroutine is handed to the loop (executor.LOOP_RUNNER).
- SIGTERM/SIGINT: stop claiming, let running tasks finish (up to the grace period), give back
  what was claimed but not started, uncounted; a second signal (or the grace period ending)
  cancels the coroutines, gives back every unfinished task uncounted, and exits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from .. import tracing
from ..backends.base import Delivery, Release, Settlement
from ..errors import TaskTimeout
from ..middleware import Middleware
from . import timeouts
from .consumer import (
    HEARTBEAT_EVERY,
    IDLE_MAX,
    IDLE_MIN,
    Held,
    LeaseKeeper,
    Outcome,
    give_back,
    log_outcome,
)
from .control import TERMINATED, RevocationWatch, revoked_outcome, skip_if_revoked
from .executor import LOOP_RUNNER, Executor, Finished, Prepared, timeout_failure
from .limits import Gate
from .outage import Outage
from .stats import Stats

if TYPE_CHECKING:
    from ..app import Conveyor

log = logging.getLogger("conveyor.worker")
P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_CONCURRENCY = 100  # tasks at once when -c is not given
MAX_CLAIM = 32  # deliveries claimed in one round trip
STOP_WAIT = 1.0  # seconds a cancelled coroutine gets to clean up before its outcome is settled
TICK = 0.05  # seconds between checks of soft limits (threads) and revocations


@dataclass(eq=False, slots=True)
class Run:
    """One started task."""

    p: Prepared
    is_async: bool
    stop: asyncio.Future[None]
    task: asyncio.Task[Any] | None = None  # the asyncio task awaiting the coroutine
    why: str | None = None  # stopped from outside: "timeout", "revoked" or "shutdown"
    soft_fired: bool = False
    timers: list[asyncio.TimerHandle] = field(default_factory=list)


class AsyncHost:
    def __init__(self, app: Conveyor, *, concurrency: int, queues: list[str] | None,
                 worker_id: str, grace: float,
                 heartbeat: Callable[[], float | None] | None = None) -> None:
        self.app = app
        self.backend = app.backend
        self.concurrency = concurrency
        self.queues = queues
        self.worker_id = worker_id
        self.grace = grace
        self.heartbeat = heartbeat
        self.held = Held()
        self.keeper_stop = threading.Event()
        self.runs: dict[str, Run] = {}
        self.active = 0  # claimed deliveries not finished yet (started or about to)
        self.pending: list[Outcome] = []  # outcomes to settle
        self.signals = 0
        self.stopping = False
        self.revocations = RevocationWatch(app.backend)
        self.outage = Outage("claiming from the backend", log)
        self.idle_max = max(IDLE_MAX, app.backend.idle_wait_max)
        self.middleware = any(type(m).execute is not Middleware.execute for m in app.middleware)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.stats = Stats(app, app.backend)  # task counters, sent about once a second

    def run(self) -> int:
        timeouts.use_threads()  # soft limits of plain functions, in their threads
        self.executor = Executor(self.app)
        self.gate = Gate(self.app, self.backend)
        self.threads = DaemonThreads(self.concurrency, "conveyor-sync")
        keeper = LeaseKeeper(self.app, self.backend, self.held, self.keeper_stop)
        keeper.start()
        self.stats.start()
        try:
            return asyncio.run(self.main())
        finally:
            self.keeper_stop.set()
            self.threads.shutdown(wait=False)
            self.stats.close()

    # --- the loop -----------------------------------------------------------------------
    async def main(self) -> int:
        loop = self.loop = asyncio.get_running_loop()
        self.changed = asyncio.Event()  # a run ended, or a signal came
        self.outcomes = asyncio.Event()  # an outcome waits to be settled
        self.stop_requested = asyncio.Event()
        self.settling = asyncio.Lock()
        in_main = threading.current_thread() is threading.main_thread()
        sigs = (signal.SIGTERM, signal.SIGINT) if in_main else ()
        for s in sigs:
            loop.add_signal_handler(s, self.on_signal)
        helpers = [loop.create_task(c) for c in (self.monitor(), self.beat(), self.settler())]
        claimer = loop.create_task(self.claimer())
        try:
            await self.stop_requested.wait()
            log.info("stopping: finishing running tasks (up to %gs); signal again to stop "
                     "at once", self.grace)
            deadline = loop.time() + self.grace
            while self.active or not claimer.done():
                if self.signals >= 2 or loop.time() > deadline:
                    await self.abandon()
                    return 0
                self.changed.clear()
                try:
                    await asyncio.wait_for(self.changed.wait(), 0.1)
                except TimeoutError:
                    pass
            await self.flush(patient=True)
        finally:
            for t in helpers:
                t.cancel()
            for s in sigs:
                loop.remove_signal_handler(s)
        return 0

    def on_signal(self) -> None:
        self.signals += 1
        self.stopping = True
        self.stop_requested.set()
        self.changed.set()

    async def pause(self, seconds: float) -> None:
        """Sleep, but wake when a stop is requested."""
        try:
            await asyncio.wait_for(self.stop_requested.wait(), seconds)
        except TimeoutError:
            pass

    async def claimer(self) -> None:
        idle = IDLE_MIN
        while not self.stopping:
            try:
                idle = await self.claim(idle)
            except Exception:  # a bug of ours must not stop the claiming
                log.exception("internal error while claiming")
                await self.pause(1.0)

    async def claim(self, idle: float) -> float:
        """One round: settle what is pending and claim up to the free room, or wait for work.
        Returns the next idle wait."""
        free = self.concurrency - self.active
        if free <= 0:
            self.changed.clear()
            await self.changed.wait()
            return idle
        pending, self.pending = self.pending, []
        try:
            settled, batch = await asyncio.to_thread(
                self._settle_and_claim, [o.fin.settlement for o in pending], min(free, MAX_CLAIM))
        except Exception as exc:  # e.g. BackendUnavailable while a server restarts
            self.pending[:0] = pending
            await self.pause(self.outage.failed(exc))
            return idle
        self.outage.ok()
        self.settled(pending, settled)
        if batch:
            self.held.add(batch)
            if self.stopping:  # a signal came during the claim
                await self.give_back(batch)
                return IDLE_MIN
            for d in batch:
                self.start(d)
            return IDLE_MIN
        try:
            await asyncio.to_thread(self.backend.wait_for_work, self.queues, idle)
        except Exception as exc:
            await self.pause(self.outage.failed(exc))
        return min(idle * 2, self.idle_max)

    def _settle_and_claim(self, settlements: list[Settlement], limit: int,
                          ) -> tuple[list[bool], list[Delivery]]:
        """In a thread: `now` is read there, not before the hop (a stale `now` could miss
        what was enqueued meanwhile)."""
        return self.backend.settle_and_claim(settlements, self.queues, self.worker_id,
                                             self.app.clock.now(), self.app.lease, limit)

    async def settler(self) -> None:
        """Sends outcomes while the claimer is busy waiting for work (it takes them along
        with its next claim otherwise)."""
        delay = 0.05
        while True:
            await self.outcomes.wait()
            self.outcomes.clear()
            if await self.flush():
                delay = 0.05
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                self.outcomes.set()

    async def monitor(self) -> None:
        while True:
            timeouts.fire_due(time.monotonic())  # soft limits of plain functions (threads)
            await self.check_revoked()
            await asyncio.sleep(TICK)

    async def beat(self) -> None:
        if self.heartbeat is None:
            return
        while True:
            soon = None
            try:
                soon = await asyncio.to_thread(self.heartbeat)
            except Exception as exc:
                log.warning("worker heartbeat failed: %s", exc)
            await asyncio.sleep(min(HEARTBEAT_EVERY, soon or HEARTBEAT_EVERY))

    # --- one delivery --------------------------------------------------------------------
    def start(self, d: Delivery) -> None:
        self.active += 1
        t = self.loop.create_task(self.run_one(d))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def run_one(self, d: Delivery) -> None:
        try:
            outcome = await self.execute(d)
        except Exception:  # a bug of ours must not end the worker: counted, so no loop
            log.exception("internal error while running task %s", d.id)
            outcome = Outcome(Finished(Release(d.id, d.token, self.app.clock.now()), "retry",
                                       "internal error"), "?", 0.0)
        finally:
            self.active -= 1
            self.changed.set()
        self.pending.append(outcome)
        self.outcomes.set()

    async def execute(self, d: Delivery) -> Outcome:
        prepared = self.executor.prepare(d)
        if d.delivery_count > 1 and isinstance(prepared, Prepared):
            prepared = await asyncio.to_thread(skip_if_revoked, self.app, self.backend, d,
                                               prepared)
        if isinstance(prepared, Finished):
            log_outcome("?", d.id, prepared, 0.0)
            return Outcome(prepared, "?", 0.0)
        p, name = prepared, prepared.task.name
        limits = p.task.options.limits
        gated = limits is not None and limits.gated
        if gated:
            deferred = await asyncio.to_thread(self.gate.admit, p)
            if deferred is not None:  # over a rate or concurrency limit: back uncounted
                return Outcome(deferred, name, 0.0)
        if self.stopping:  # claimed, not started: back at once, uncounted
            if gated:
                await asyncio.to_thread(self.gate.release, p)
            return Outcome(Finished(Release(d.id, d.token, self.app.clock.now(),
                                            attempted=False), "given back"), name, 0.0)
        run = Run(p, p.task.is_async, self.loop.create_future())
        self.runs[d.id] = run
        log.info("%s[%s] started (attempt %d)", name, d.id, p.attempt)
        t0 = time.perf_counter()
        try:
            fin = await self.call(run)
        finally:
            self.runs.pop(d.id, None)
            for timer in run.timers:
                timer.cancel()
            if gated:
                await asyncio.to_thread(self.gate.release, p)
        seconds = time.perf_counter() - t0
        log_outcome(name, d.id, fin, seconds)
        return Outcome(fin, name, seconds)

    async def call(self, run: Run) -> Finished:
        p, loop = run.p, self.loop
        limits = p.task.options.limits
        soft = limits.soft_timeout if limits is not None else None
        hard = p.task.options.timeout
        if run.is_async and soft is not None:
            run.timers.append(loop.call_later(soft, self.soft_limit, run, soft))
        if hard is not None:
            run.timers.append(loop.call_later(hard, self.stop_run, run, "timeout"))
        work: asyncio.Future[Finished]
        native = run.is_async and not self.middleware
        if native:
            work = loop.create_task(self.native(run))
        else:
            ctx = contextvars.copy_context()
            if run.is_async:
                ctx.run(LOOP_RUNNER.set, functools.partial(self.bridge, run))
            work = loop.run_in_executor(self.threads, ctx.run, self.executor.run, p)
        await asyncio.wait((work, run.stop), return_when=asyncio.FIRST_COMPLETED)
        if run.why is None:
            try:
                fin = work.result()
            except BaseException as exc:  # the coroutine cancelled itself
                fin = self.executor.failed(p, exc)
            if native and p.envelope.flow is not None:  # what comes next in its workflow
                from .flow import finish_step

                fin = await asyncio.to_thread(finish_step, self.executor, p, fin)
            if p.ctx.revoked:  # a plain function stopped by revoke(terminate=True)
                fin = revoked_outcome(self.app, p.delivery, p.task, TERMINATED)
            return fin
        # Stopped from outside: let a cancelled coroutine clean up; a thread runs on.
        if run.is_async and not work.done():
            await asyncio.wait((work,), timeout=STOP_WAIT)
        work.add_done_callback(_ignore)
        d = p.delivery
        if run.why == "timeout":
            fin = timeout_failure(self.app, d, p.task, p.attempt, p.retries, hard)
            if p.envelope.flow is not None:  # a workflow step: fail the steps after it
                from .flow import fail_steps_after

                await asyncio.to_thread(fail_steps_after, self.app, p.envelope, fin.settlement)
            return fin
        if run.why == "revoked":
            return revoked_outcome(self.app, d, p.task, TERMINATED)
        return Finished(Release(d.id, d.token, self.app.clock.now(), attempted=False),
                        "given back", "the worker stopped at once")

    async def native(self, run: Run) -> Finished:
        """An async task, no middleware: the coroutine runs in this asyncio task."""
        span = tracing.start_run(run.p.envelope, run.p.attempt)  # with OpenTelemetry only
        if span is None:
            return await self._native(run)
        try:
            fin = await self._native(run)
        except BaseException as exc:  # cancelled (a time limit, revoked, stopped at once)
            span.end(None, exc)
            raise
        span.end(fin)
        return fin

    async def _native(self, run: Run) -> Finished:
        p = run.p
        task, env = p.task, p.envelope
        try:
            if task.options.bind:
                coro = task.fn(p.ctx, *env.args, **env.kwargs)
            else:
                coro = task.fn(*env.args, **env.kwargs)
            value = await self.guarded(run, coro)
        except (Exception, SystemExit, KeyboardInterrupt) as exc:
            return self.executor.failed(p, exc)
        return self.executor.succeeded(p, value)

    async def guarded(self, run: Run, coro: Coroutine[Any, Any, Any]) -> Any:
        """Await the task's coroutine, as the asyncio task that time limits and revocation
        cancel; a cancellation by the soft limit comes out as `TaskTimeout`."""
        run.task = asyncio.current_task()
        try:
            return await coro
        except asyncio.CancelledError:
            if run.soft_fired and run.why is None:
                limits = run.p.task.options.limits
                soft = limits.soft_timeout if limits is not None else None
                raise TaskTimeout(timeouts.soft_message(run.p.task.name, soft)) from None
            raise

    def bridge(self, run: Run, coro: Coroutine[Any, Any, Any]) -> Any:
        """In a middleware thread: run the coroutine on the loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(self.guarded(run, coro), self.loop).result()

    def soft_limit(self, run: Run, soft: float) -> None:
        if run.why is not None or run.soft_fired:
            return
        run.soft_fired = True
        run.p.ctx.cancelled = True
        if run.task is not None:
            run.task.cancel(timeouts.soft_message(run.p.task.name, soft))

    def stop_run(self, run: Run, why: str) -> None:
        """Hard time limit, revoke(terminate=True) or stop at once: cancel the coroutine (a
        thread only hears of it: `ctx.cancelled`, best-effort injection on a time limit)."""
        if run.why is not None or run.stop.done():
            return
        run.why = why
        p = run.p
        p.ctx.cancelled = True
        if why == "revoked":
            p.ctx.revoked = True
        message = (f"{p.task.name} ran past its timeout of {p.task.options.timeout}s"
                   if why == "timeout" else f"{p.task.name}: {why}")
        if run.is_async:
            if run.task is not None:
                run.task.cancel(message)
        elif why == "timeout":
            timeouts.interrupt(p.ctx, message)  # best effort; the thread may run on
        run.stop.set_result(None)
        if why == "timeout":
            log.error("%s[%s] passed its time limit of %gs: %s", p.task.name, p.delivery.id,
                      p.task.options.timeout,
                      "cancelled" if run.is_async else "its thread runs on; result discarded")

    async def check_revoked(self) -> None:
        if not self.revocations.due():
            return
        running = [i for i, r in self.runs.items() if not r.p.ctx.revoked and r.why is None]
        if not running:
            return
        for mid in await asyncio.to_thread(self.revocations.to_stop, running):
            run = self.runs.get(mid)
            if run is None:
                continue
            if run.is_async:
                log.warning("%s[%s] revoked: cancelling it", run.p.task.name, mid)
                self.stop_run(run, "revoked")
            else:
                run.p.ctx.revoked = run.p.ctx.cancelled = True
                log.warning("%s[%s] revoked: ctx.cancelled is set; it stops when the task "
                            "next looks at it", run.p.task.name, mid)

    # --- settling ------------------------------------------------------------------------
    def settled(self, outcomes: Sequence[Outcome], results: Sequence[bool]) -> None:
        self.stats.settled(outcomes, results)
        for outcome, ok in zip(outcomes, results, strict=False):
            self.held.discard(outcome.fin.settlement.id)
            if not ok:
                log.warning("%s[%s] %s but its lease was taken over: outcome discarded",
                            outcome.name, outcome.fin.settlement.id, outcome.fin.outcome)

    async def flush(self, patient: bool = False) -> bool:
        """Settle the pending outcomes; `patient`: retry while the backend is unreachable, up
        to half a lease (after that the leases run out and the tasks run again)."""
        async with self.settling:  # the last flush waits for one under way
            return await self._flush(patient)

    async def _flush(self, patient: bool) -> bool:
        deadline = time.monotonic() + self.app.lease / 2
        delay = 0.05
        while self.pending:
            batch, self.pending = self.pending, []
            try:
                results = await asyncio.to_thread(
                    self.backend.settle, [o.fin.settlement for o in batch], self.app.clock.now())
            except Exception as exc:
                self.pending[:0] = batch
                if not patient:
                    log.warning("settle failed (%s); retrying", exc)
                    return False
                if time.monotonic() > deadline:
                    log.error("could not settle %d task(s): %s; they run again after their "
                              "lease", len(self.pending), exc)
                    self.pending.clear()
                    return False
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self.settled(batch, results)
        return True

    async def give_back(self, unstarted: Sequence[Delivery]) -> None:
        await asyncio.to_thread(give_back, self.app, self.backend, self.held, unstarted)

    async def abandon(self) -> None:
        """Second signal or grace over: cancel the coroutines (each gets up to STOP_WAIT to
        clean up), give back every unfinished task uncounted, and leave; threads running
        plain functions die with the process."""
        stopped = list(self.runs.values())
        for run in stopped:
            self.stop_run(run, "shutdown")
        end = self.loop.time() + STOP_WAIT + 0.5
        while self.active and self.loop.time() < end:
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), 0.05)
            except TimeoutError:
                pass
        await self.flush()
        leases = self.held.snapshot()
        if leases:
            now = self.app.clock.now()
            try:
                await asyncio.to_thread(self.backend.settle,
                                        [Release(i, t, now, attempted=False)
                                         for i, t in leases], now)
            except Exception as exc:
                log.warning("could not give back %d task(s): %s", len(leases), exc)
        log.warning("stopped at once: %d unfinished task(s) returned to the queue",
                    len(stopped) + len(leases))
        logging.shutdown()
        os._exit(0)


class DaemonThreads(concurrent.futures.Executor):
    """Up to `n` daemon threads, started as needed, for plain functions: one that ran past its
    time limit (no one can stop a thread) must not keep the process from exiting, as the
    non-daemon threads of `ThreadPoolExecutor` would."""

    def __init__(self, n: int, prefix: str) -> None:
        self.n, self.prefix = n, prefix
        self.work: queue.SimpleQueue[tuple[concurrent.futures.Future[Any],
                                           Callable[..., Any], tuple[Any, ...],
                                           dict[str, Any]] | None] = queue.SimpleQueue()
        self.idle = threading.Semaphore(0)
        self.lock = threading.Lock()
        self.started = 0

    def submit(self, fn: Callable[P, T], /, *args: P.args,
               **kwargs: P.kwargs) -> concurrent.futures.Future[T]:
        f: concurrent.futures.Future[T] = concurrent.futures.Future()
        self.work.put((f, fn, args, kwargs))
        if not self.idle.acquire(blocking=False):
            with self.lock:
                if self.started < self.n:
                    self.started += 1
                    threading.Thread(target=self._serve, name=f"{self.prefix}-{self.started}",
                                     daemon=True).start()
        return f

    def _serve(self) -> None:
        while (item := self.work.get()) is not None:
            f, fn, args, kwargs = item
            if f.set_running_or_notify_cancel():
                try:
                    f.set_result(fn(*args, **kwargs))
                except BaseException as exc:
                    f.set_exception(exc)
            del f, fn, args, kwargs, item
            self.idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        for _ in range(self.started):  # idle threads end; busy ones die with the process
            self.work.put(None)


def _ignore(f: asyncio.Future[Any]) -> None:
    """Retrieve the late outcome of a stopped run, so asyncio does not log it."""
    if not f.cancelled():
        f.exception()
