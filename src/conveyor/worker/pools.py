"""The thread pool: N slots as threads in this process, with a cooperative time limit.

A thread cannot be killed, so a task past its `timeout` is settled as `TaskTimeout` (fenced)
and its context is marked cancelled; the thread's own late settle is then refused by the
backend, so the outcome is recorded once.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..backends.base import Delivery, Release
from . import timeouts
from .consumer import HEARTBEAT_EVERY, Held, LeaseKeeper, Slot
from .control import RevocationWatch
from .executor import Prepared, timeout_failure
from .flow import fail_steps_after
from .stats import Stats

if TYPE_CHECKING:
    from ..app import Conveyor

log = logging.getLogger("conveyor.worker")


class ThreadHost:
    def __init__(self, app: Conveyor, *, concurrency: int, queues: list[str] | None,
                 worker_id: str, grace: float,
                 heartbeat: Callable[[], float | None] | None = None) -> None:
        self.app = app
        self.concurrency = concurrency
        self.queues = queues
        self.worker_id = worker_id
        self.grace = grace
        self.heartbeat = heartbeat
        self.stop = threading.Event()
        self.held = Held()
        self._lock = threading.Lock()
        self._running: dict[str, tuple[Prepared, float | None]] = {}
        self.signals = 0
        self.revocations = RevocationWatch(app.backend)  # revoke(terminate=True): control.py
        self.stats = Stats(app, app.backend)  # task counters, sent about once a second

    # Reporter protocol: what the slots tell us.
    def claimed(self, batch: Sequence[Delivery]) -> None:
        pass

    def started(self, p: Prepared, deadline: float | None) -> None:
        with self._lock:
            self._running[p.delivery.id] = (p, deadline)

    def finished(self, d: Delivery, timed: bool) -> None:
        with self._lock:
            self._running.pop(d.id, None)

    def _on_signal(self, signum: int, frame: Any) -> None:
        # Only count: a handler that took a lock (Event.set, logging) could deadlock with the
        # main thread it interrupted while that thread held the same lock.
        self.signals += 1

    def run(self) -> int:
        in_main = threading.current_thread() is threading.main_thread()
        timeouts.use_threads()  # soft time limits in the slots' threads (timeouts.py)
        old: dict[int, Any] = {}
        if in_main:
            old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        keeper = LeaseKeeper(self.app, self.app.backend, self.held, self.stop)
        keeper.start()
        self.stats.start()
        threads = [threading.Thread(target=Slot(self.app, self.app.backend, self.queues,
                                                self.worker_id, self.held, self.stop,
                                                self, stats=self.stats).run,
                                    name=f"conveyor-slot-{i}", daemon=True)
                   for i in range(self.concurrency)]
        for t in threads:
            t.start()
        try:
            next_beat = 0.0
            while not self.signals and not self.stop.is_set():
                if self.heartbeat is not None and time.monotonic() >= next_beat:
                    soon = None
                    try:
                        soon = self.heartbeat()
                    except Exception as exc:
                        log.warning("worker heartbeat failed: %s", exc)
                    next_beat = time.monotonic() + min(HEARTBEAT_EVERY, soon or HEARTBEAT_EVERY)
                self.check_deadlines()
                self.check_revoked()
                time.sleep(0.05)
            log.info("stopping: finishing running tasks (up to %gs); signal again to stop "
                     "at once", self.grace)
            self.stop.set()
            deadline = time.monotonic() + self.grace
            while any(t.is_alive() for t in threads):
                if self.signals >= 2 or time.monotonic() > deadline:
                    self.abandon()
                    return 0
                self.check_deadlines()
                self.check_revoked()
                for t in threads:
                    t.join(timeout=0.1)
            self.stats.close()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        return 0

    def check_deadlines(self) -> None:
        timeouts.fire_due(time.monotonic())  # soft limits: TaskTimeout in the task, best effort
        now = self.app.clock.now()
        with self._lock:
            late = [(p, dl) for p, dl in self._running.values() if dl is not None and now >= dl]
            for p, _ in late:
                self._running.pop(p.delivery.id, None)
        for p, _ in late:
            p.ctx.cancelled = True
            fin = timeout_failure(self.app, p.delivery, p.task, p.attempt, p.retries,
                                  p.task.options.timeout)
            try:
                fail_steps_after(self.app, p.envelope, fin.settlement)  # a workflow step
                ok = self.app.backend.settle([fin.settlement], now)[0]
                self.stats.record(fin, p.task.name, ok)
                if ok:  # the thread's own settle, when the task returns, will be refused
                    self.stats.superseded(p.delivery.id)
                if ok:
                    log.error("%s[%s] passed its time limit: %s (the thread runs on until the "
                              "task returns; its result will be discarded)", p.task.name,
                              p.delivery.id, fin.detail or fin.outcome)
            except Exception as exc:
                log.error("could not settle timed-out task %s: %s", p.delivery.id, exc)
            timeouts.interrupt(p.ctx, f"{p.task.name} ran past its timeout of "
                                      f"{p.task.options.timeout}s")  # best effort
            self.held.discard(p.delivery.id)

    def check_revoked(self) -> None:
        """revoke(terminate=True) of a running task: its `ctx.cancelled` becomes True, and the
        slot records it REVOKED when the task returns or raises (control.py)."""
        if not self.revocations.due():
            return
        with self._lock:
            running = {i: p for i, (p, _) in self._running.items() if not p.ctx.revoked}
        for mid in self.revocations.to_stop(list(running)):
            p = running[mid]
            p.ctx.revoked = p.ctx.cancelled = True
            log.warning("%s[%s] revoked: ctx.cancelled is set; it stops when the task next "
                        "looks at it", p.task.name, mid)

    def abandon(self) -> None:
        """Second signal or grace over: give back what is held and leave; the threads die
        with the process."""
        leases = self.held.snapshot()
        now = self.app.clock.now()
        if leases:
            try:
                self.app.backend.settle([Release(i, t, now, attempted=False)
                                         for i, t in leases], now)
            except Exception as exc:
                log.warning("could not give back %d task(s): %s", len(leases), exc)
        log.warning("stopped at once: %d unfinished task(s) returned to the queue", len(leases))
        logging.shutdown()
        os._exit(0)
