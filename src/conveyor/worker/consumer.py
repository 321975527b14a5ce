"""The claim loop: claim a small batch, run each delivery, settle it; plus the heartbeat
thread that extends the leases this process holds.

One `Slot` runs one task at a time. A process-pool child runs one slot in its main thread; the
thread pool runs N slots in N threads. Each slot claims for itself, so no task payload ever
passes through another process or a shared in-memory queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..backends.base import Ack, Backend, Bury, Delivery, Release
from .control import TERMINATED, revoked_outcome, skip_if_revoked
from .executor import Executor, Finished, Prepared
from .limits import Gate, renew_slots
from .outage import Outage

if TYPE_CHECKING:
    from ..app import Conveyor
    from .stats import Stats

log = logging.getLogger("conveyor.worker")

IDLE_MIN = 0.001  # first idle poll after activity (seconds)
IDLE_MAX = 0.1  # slowest idle poll (longer where the backend says its server wakes us)
FAST_TASK = 0.005  # tasks quicker than this let a slot claim bigger batches
MAX_BATCH = 16
HEARTBEAT_EVERY = 0.5  # seconds between the pool's heartbeat calls (upkeep, registry)


class Reporter(Protocol):
    """Who hears what a slot is doing (the supervisor over a pipe, or the thread host)."""

    def claimed(self, batch: Sequence[Delivery]) -> None: ...

    def started(self, p: Prepared, deadline: float | None) -> None: ...

    def finished(self, d: Delivery, timed: bool) -> None: ...


class NullReporter:
    def claimed(self, batch: Sequence[Delivery]) -> None:
        pass

    def started(self, p: Prepared, deadline: float | None) -> None:
        pass

    def finished(self, d: Delivery, timed: bool) -> None:
        pass


class Held:
    """The leases this process holds, shared by its slots and its heartbeat thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leases: dict[str, str] = {}

    def add(self, batch: Sequence[Delivery]) -> None:
        with self._lock:
            for d in batch:
                self._leases[d.id] = d.token

    def discard(self, id: str) -> None:
        with self._lock:
            self._leases.pop(id, None)

    def snapshot(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._leases.items())

    def __len__(self) -> int:
        return len(self._leases)

    def __contains__(self, id: object) -> bool:
        return id in self._leases


class LeaseKeeper(threading.Thread):
    """Extends every held lease each `lease/3` seconds, so a task that runs longer than the
    lease is never taken by a second worker while this process lives."""

    def __init__(self, app: Conveyor, backend: Backend, held: Held,
                 stop: threading.Event) -> None:
        super().__init__(name="conveyor-leases", daemon=True)
        self.app, self.backend, self.held, self.stop = app, backend, held, stop
        self.interval = max(0.2, app.lease / 3)
        self.outage = Outage("extending leases", log)

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        leases = self.held.snapshot()
        if not leases:
            return
        try:
            kept = self.backend.extend(leases, self.app.clock.now(), self.app.lease)
        except Exception as exc:  # the backend is down: keep trying; the lease may run out
            self.outage.failed(exc)
            return
        self.outage.ok()
        for mid, token in leases:
            if token not in kept:
                self.held.discard(mid)
                log.warning("lease of task %s was lost (it may run again elsewhere)", mid)
        renew_slots(self.app, self.backend, [m for m, t in leases if t in kept],
                    self.app.clock.now())  # concurrency slots live as long as the lease


@dataclass(slots=True)
class Outcome:
    """A finished delivery whose settlement rides along with the next claim."""

    fin: Finished
    name: str
    seconds: float


class Slot:
    """Runs one delivery at a time: claim -> prepare -> run -> settle.

    Settlements are not sent one by one: the outcomes of a batch go to the backend together
    with the next claim (`settle_and_claim`), one round trip for both. Results of a batch of
    quick tasks therefore become visible when the batch ends (at most MAX_BATCH x FAST_TASK).
    """

    def __init__(self, app: Conveyor, backend: Backend, queues: Sequence[str] | None,
                 worker_id: str, held: Held, stop: threading.Event,
                 reporter: Reporter | None = None, max_tasks: int | None = None,
                 stats: Stats | None = None) -> None:
        self.app, self.backend, self.queues = app, backend, queues
        self.worker_id, self.held, self.stop = worker_id, held, stop
        self.reporter = reporter or NullReporter()
        self.stats = stats  # task counters (stats.py), counted as settles return
        self.max_tasks = max_tasks
        self.executor = Executor(app)
        self.gate = Gate(app, backend)  # rate and concurrency limits (limits.py)
        self.done = 0
        self.slow: dict[str, float] = {}  # task name -> recent duration (seconds)
        self.pending: list[Outcome] = []
        self.outage = Outage("claiming from the backend", log)
        self.idle_max = max(IDLE_MAX, backend.idle_wait_max)

    def _exhausted(self) -> bool:
        return self.max_tasks is not None and self.done >= self.max_tasks

    def run(self) -> int:
        """Loop until told to stop (or `max_tasks` ran). Returns how many deliveries ran.

        The claim batch adapts so that quick tasks amortise the claim while slow ones are never
        hoarded: it starts at 1 after idling, doubles while tasks take under FAST_TASK, and the
        unstarted rest of a batch is given back before a task known to be slow runs (and after
        one turns out slow), so idle workers can take it.
        """
        limit, idle = 1, IDLE_MIN
        try:
            while not self.stop.is_set() and not self._exhausted():
                try:
                    settled, batch = self.backend.settle_and_claim(
                        [o.fin.settlement for o in self.pending], self.queues, self.worker_id,
                        self.app.clock.now(), self.app.lease, limit)
                except Exception as exc:  # e.g. BackendUnavailable while a server restarts
                    self.stop.wait(self.outage.failed(exc))
                    continue
                self.outage.ok()
                self.settled(settled)
                if not batch:
                    limit = 1
                    try:
                        self.backend.wait_for_work(self.queues, idle)
                    except Exception as exc:
                        self.stop.wait(self.outage.failed(exc))
                    idle = min(idle * 2, self.idle_max)
                    continue
                idle = IDLE_MIN
                self.held.add(batch)
                if len(batch) > 1:
                    self.reporter.claimed(batch)
                try:
                    all_fast = self.run_batch(batch)
                except Exception:  # a bug of ours must not end the slot
                    log.exception("internal error while running a batch")
                    self.abandon(batch)
                    all_fast = False
                limit = min(limit * 2, MAX_BATCH) if all_fast else 1
        finally:
            self.flush()
        return self.done

    def run_batch(self, batch: Sequence[Delivery]) -> bool:
        """Run a claimed batch; returns True when every task in it was quick."""
        for i, d in enumerate(batch):
            rest = batch[i + 1:]
            if self.stop.is_set() or self._exhausted():
                self.give_back(batch[i:])
                return False
            prepared = self.executor.prepare(d)
            if d.delivery_count > 1:  # a retry or redelivery: revoked since? (control.py)
                prepared = skip_if_revoked(self.app, self.backend, d, prepared)
            if isinstance(prepared, Prepared):
                deferred = self.gate.admit(prepared)
                if deferred is not None:  # over a rate or concurrency limit: back uncounted
                    self.pending.append(Outcome(deferred, prepared.task.name, 0.0))
                    continue
            name = None if isinstance(prepared, Finished) else prepared.task.name
            known_slow = name is not None and self.slow.get(name, 0.0) > FAST_TASK
            if rest and known_slow:
                self.give_back(rest)
            seconds = self.process(d, prepared)
            if name is not None:  # a moving average of each task's duration
                self.slow[name] = 0.7 * self.slow.get(name, seconds) + 0.3 * seconds
            if seconds > FAST_TASK or known_slow:
                if rest and not known_slow:
                    self.give_back(rest)
                return False
        return True

    def abandon(self, batch: Sequence[Delivery]) -> None:
        """After an internal error: release what is neither settled nor pending, counted as an
        attempt (so a message that trips the error cannot loop forever)."""
        pending = {o.fin.settlement.id for o in self.pending}
        now = self.app.clock.now()
        rest = [d for d in batch if d.id not in pending and d.id in self.held]
        try:
            self.backend.settle([Release(d.id, d.token, now) for d in rest], now)
        except Exception as exc:
            log.warning("could not release %d task(s): %s (they return after their lease)",
                        len(rest), exc)
        for d in rest:
            self.held.discard(d.id)

    def give_back(self, unstarted: Sequence[Delivery]) -> None:
        give_back(self.app, self.backend, self.held, unstarted)

    def process(self, d: Delivery, prepared: Prepared | Finished) -> float:
        """Run one prepared delivery; its settlement joins `pending`. Returns its duration."""
        t0 = time.perf_counter()
        name = "?"
        timed = False
        if isinstance(prepared, Finished):
            fin = prepared
        else:
            name = prepared.task.name
            limit = prepared.task.options.timeout
            timed = limit is not None
            deadline = None if limit is None else self.app.clock.now() + limit
            log.info("%s[%s] started (attempt %d)", name, d.id, prepared.attempt)
            self.reporter.started(prepared, deadline)
            try:
                fin = self.executor.run(prepared)
            finally:
                self.gate.release(prepared)  # its concurrency slot, if it holds one
            if prepared.ctx.revoked:  # revoke(terminate=True) stopped it (thread pool)
                fin = revoked_outcome(self.app, d, prepared.task, TERMINATED)
        self.done += 1
        self.reporter.finished(d, timed)
        seconds = time.perf_counter() - t0
        log_outcome(name, d.id, fin, seconds)
        self.pending.append(Outcome(fin, name, seconds))
        return seconds

    def settled(self, results: Sequence[bool]) -> None:
        """The pending outcomes reached the backend: say which ones were refused (lease lost)."""
        if self.stats is not None:
            self.stats.settled(self.pending, results)
        for outcome, ok in zip(self.pending, results, strict=False):
            self.held.discard(outcome.fin.settlement.id)
            if not ok:
                log.warning("%s[%s] %s but its lease was taken over: outcome discarded",
                            outcome.name, outcome.fin.settlement.id, outcome.fin.outcome)
        self.pending.clear()

    def flush(self) -> None:
        """Send pending outcomes, retrying while the backend is unreachable (up to half a lease:
        after that the lease runs out and the tasks run again, which is at-least-once)."""
        if not self.pending:
            return
        deadline = time.monotonic() + self.app.lease / 2
        delay = 0.05
        while True:
            try:
                self.settled(self.backend.settle([o.fin.settlement for o in self.pending],
                                                 self.app.clock.now()))
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    log.error("could not settle %d task(s): %s; they run again after their "
                              "lease", len(self.pending), exc)
                    self.pending.clear()
                    return
                log.warning("settle failed (%s); retrying", exc)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)


def give_back(app: Conveyor, backend: Backend, held: Held,
              unstarted: Sequence[Delivery]) -> None:
    """Release claimed but unstarted deliveries at once, uncounted, for another worker (every
    pool's slots use this)."""
    now = app.clock.now()
    try:
        backend.settle([Release(d.id, d.token, now, attempted=False) for d in unstarted], now)
    except Exception as exc:
        log.warning("could not give back %d task(s): %s (they return after their lease)",
                    len(unstarted), exc)
    for d in unstarted:
        held.discard(d.id)


def log_outcome(name: str, id: str, fin: Finished, seconds: float) -> None:
    s = fin.settlement
    if isinstance(s, Ack):
        log.info("%s[%s] %s in %.3fs", name, id, fin.outcome, seconds)
    elif isinstance(s, Release):
        log.warning("%s[%s] will retry after %.3fs: %s", name, id, seconds, fin.detail)
    elif isinstance(s, Bury):
        log.error("%s[%s] %s after %.3fs -> dead letters: %s", name, id, fin.outcome, seconds,
                  s.reason)


