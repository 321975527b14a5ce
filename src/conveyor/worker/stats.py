"""Task counters, the worker's side: count in memory, send to the backend about once a second.

Every worker process (a process-pool child, the supervisor, the thread or asyncio pool) keeps
one `Stats`. A slot records the outcomes the backend accepted (and the ones it refused: lease
losses) when their settle returns, under a lock, with no I/O; a thread of its own adds the
sums to the backend's counters (`Backend.incr_many`, keys in `conveyor.stats`) every FLUSH_EVERY
seconds, and only when something happened (the supervisor, which must not run a thread that
could hold a lock while it forks, flushes from its loop instead). So a task never waits on a counter, an idle worker
sends nothing, and a busy one makes one backend call a second whatever its rate.

A flush is one `Backend.incr_many` call (one transaction or script: all the keys or none). One
that fails (the backend is down) keeps the counts for the next one and is logged once
(`Outage`), so a retry does not count twice (except a call whose reply was lost). What a
process counted in its last second is lost when it dies without `close()` (killed, or stopped
at once).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from ..backends.base import REVOKED, SUCCESS, Ack, Backend, Bury, Release
from ..stats import (
    ACTIVITY,
    ACTIVITY_TTL,
    LEASE_LOST,
    MINUTE,
    OUTCOMES,
    TOTAL_TTL,
    bucket_index,
    bucket_key,
    minute_key,
    outcome_key,
    sum_key,
)
from .outage import Outage

if TYPE_CHECKING:
    from ..app import Conveyor
    from .executor import Finished

log = logging.getLogger("conveyor.worker")

FLUSH_EVERY = 1.0  # seconds between sends of the counts (when there are any)
TIMED = frozenset({"succeeded", "failed", "retried", "rejected"})  # outcomes of a run
_KIND = {o: kind for kind, outcomes in ACTIVITY.items() for o in outcomes}


class Settled(Protocol):
    """A settled outcome as the slots hold it (consumer.Outcome)."""

    @property
    def fin(self) -> Finished: ...

    @property
    def name(self) -> str: ...

    @property
    def seconds(self) -> float: ...


def outcome_label(fin: Finished) -> str | None:
    """The counted outcome of a settlement; None for one that is not an outcome (a task given
    back unstarted, deferred by a limit, or a workflow step waiting for its group)."""
    s = fin.settlement
    if isinstance(s, Release):
        return "retried" if s.attempted else None
    if fin.outcome in OUTCOMES:
        return fin.outcome
    if isinstance(s, Bury):
        return "dead"
    if isinstance(s, Ack) and s.state == SUCCESS:
        return "succeeded"
    if isinstance(s, Ack) and s.state == REVOKED:
        return "revoked"
    return "failed"


class Stats:
    """The counts of one worker process, and the thread that sends them."""

    def __init__(self, app: Conveyor, backend: Backend, interval: float = FLUSH_EVERY) -> None:
        self.app, self.backend, self.interval = app, backend, interval
        self._lock = threading.Lock()
        # Counted since the last flush, in the cheapest form to count (keys are made when
        # sending): (task, outcome) -> n, (task, bucket) -> n, task -> seconds, and
        # (minute, activity kind) -> n.
        self._outcomes: dict[tuple[str, str], int] = {}
        self._buckets: dict[tuple[str, int], int] = {}
        self._seconds: dict[str, float] = {}
        self._minutes: dict[tuple[int, str], int] = {}
        self._unsent: dict[str, tuple[int, float]] = {}  # key -> (by, ttl) a flush left
        self._superseded: set[str] = set()  # ids settled for their slot (see `superseded`)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.outage = Outage("sending task counts to the backend", log, remind_every=300.0)

    # --- counting (slots, any thread) -------------------------------------------------------
    def settled(self, outcomes: Sequence[Settled], results: Sequence[bool]) -> None:
        """Count a batch of settles: `results[i]` says whether the backend took outcome i."""
        if not outcomes:
            return
        minute = int(self.app.clock.now() // MINUTE)
        with self._lock:
            for o, ok in zip(outcomes, results, strict=False):
                self._count(o.fin, o.name, o.seconds, ok, minute)

    def record(self, fin: Finished, task: str, ok: bool, seconds: float | None = None) -> None:
        """Count one settle made outside a slot (a time limit, a lost child, a revocation)."""
        minute = int(self.app.clock.now() // MINUTE)
        with self._lock:
            self._count(fin, task, seconds, ok, minute)

    def superseded(self, id: str) -> None:
        """`id` was settled for its slot (the thread pool's time limit): the slot's own late
        settle, refused, is not a lease loss."""
        with self._lock:
            self._superseded.add(id)

    def _count(self, fin: Finished, task: str, seconds: float | None, ok: bool,
               minute: int) -> None:
        if self._superseded and fin.settlement.id in self._superseded:
            self._superseded.discard(fin.settlement.id)
            if not ok:
                return
        if task == "?":
            task = fin.task or "?"
        label = LEASE_LOST if not ok else outcome_label(fin)
        if label is None:
            return
        key = (task, label)
        self._outcomes[key] = self._outcomes.get(key, 0) + 1
        if not ok:
            return
        kind = _KIND.get(label)
        if kind is not None:
            mk = (minute, kind)
            self._minutes[mk] = self._minutes.get(mk, 0) + 1
        if seconds is not None and label in TIMED:
            bk = (task, bucket_index(seconds))
            self._buckets[bk] = self._buckets.get(bk, 0) + 1
            self._seconds[task] = self._seconds.get(task, 0.0) + seconds

    def _take(self) -> dict[str, tuple[int, float]]:
        """What was counted since the last flush, as backend increments (key -> by, ttl)."""
        with self._lock:
            outcomes, self._outcomes = self._outcomes, {}
            buckets, self._buckets = self._buckets, {}
            seconds, self._seconds = self._seconds, {}
            minutes, self._minutes = self._minutes, {}
            out, self._unsent = self._unsent, {}

        def add(key: str, by: int, ttl: float) -> None:
            had = out.get(key)
            out[key] = (by, ttl) if had is None else (had[0] + by, ttl)

        for (task, label), n in outcomes.items():
            add(outcome_key(label, task), n, TOTAL_TTL)
            add(outcome_key(label, None), n, TOTAL_TTL)
        for (task, i), n in buckets.items():
            add(bucket_key(i, task), n, TOTAL_TTL)
            add(bucket_key(i, None), n, TOTAL_TTL)
        for task, total in seconds.items():
            micros = round(total * 1e6)
            add(sum_key(task), micros, TOTAL_TTL)
            add(sum_key(None), micros, TOTAL_TTL)
        for (minute, kind), n in minutes.items():
            add(minute_key(minute, kind), n, ACTIVITY_TTL)
        return out

    # --- sending ----------------------------------------------------------------------------
    def flush(self) -> bool:
        """Send the counts; False (keeping what was not sent) when the backend fails."""
        pending = self._take()
        if not pending:
            return True
        now = self.app.clock.now()
        try:  # one call, all or none: a failed flush is sent again whole, never twice
            self.backend.incr_many([(key, by, ttl) for key, (by, ttl) in pending.items() if by],
                                   now)
        except Exception as exc:
            self._keep(pending, now)
            self.outage.failed(exc)
            return False
        self.outage.ok()
        return True

    def _keep(self, left: dict[str, tuple[int, float]], now: float) -> None:
        """Keep unsent counts for the next flush, but not minutes older than the charts show."""
        oldest = int((now - ACTIVITY_TTL) // MINUTE)
        with self._lock:
            for key, (by, ttl) in left.items():
                if ttl == ACTIVITY_TTL and int(key.split(":")[2]) < oldest:
                    continue
                had = self._unsent.get(key)
                self._unsent[key] = (by, ttl) if had is None else (had[0] + by, ttl)

    def start(self) -> None:
        """Send the counts from a daemon thread every `interval` seconds."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="conveyor-stats",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def close(self) -> None:
        """Stop the thread and send what is left (one try: a backend that is down loses it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()
