"""The gate a slot passes before it runs a task with a rate or concurrency limit.

A limited start is admitted only when

- a concurrency slot is free: the slots of a task are the lock keys `conc:<task>:<i>` (or
  `conc:<task>:<key>:<i>` with `concurrency_key`) for `i < concurrency`, taken with `try_lock`
  by the delivery (owner `<id>:<token>`) for one lease, renewed with the lease by the
  `LeaseKeeper` and unlocked when the run ends, so the slot of a killed worker frees itself
  when its lease would have ended; and
- its rate window has room: `incr` of the window's counter (see `conveyor/ratelimit.py`).

A refused start is given back uncounted (`Release(attempted=False)`) with a later `ready_at`:
the next place in a rate window, or a short growing backoff for a busy concurrency slot. The
slot goes on claiming other work, and the message is not claimable before then, so nothing
spins. The concurrency slot is taken first and the rate counter last, because a slot can be
unlocked again while a counted start cannot be taken back: a start that passes the rate check
runs, so no start is ever counted against two windows' capacity.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..backends.base import Backend, Release
from ..ratelimit import Limits, slot_keys
from .executor import Finished, Prepared, settle_failure

if TYPE_CHECKING:
    from ..app import Conveyor

log = logging.getLogger("conveyor.worker")

BUSY_FIRST = 0.05  # first wait of a start that found every concurrency slot taken (seconds)
BUSY_MAX = 5.0  # the longest such wait
OUTAGE_WAIT = 1.0  # wait of a start whose limit could not be checked (backend unreachable)


class _Process:
    """What this process knows across its slots: the concurrency slots it holds (for the
    heartbeat), recent run times per task, and each limited key's run of refusals."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held: dict[str, tuple[str, str, float]] = {}  # delivery id -> key, owner, since
        self.durations: dict[str, float] = {}  # task name -> recent run time (seconds)
        self.refusals: dict[str, int] = {}  # slot base -> refusals since the last admission

    def held_keys(self) -> set[str]:
        with self.lock:
            return {k for k, _, _ in self.held.values()}


PROCESS = _Process()


class Gate:
    """Admits or defers each start of a limited task for one slot."""

    def __init__(self, app: Conveyor, backend: Backend) -> None:
        self.app, self.backend = app, backend

    def admit(self, p: Prepared) -> Finished | None:
        """None: run it now (holding a concurrency slot if it has a limit). Otherwise the
        uncounted give-back (or, when `concurrency_key` raised, the failure) to settle."""
        limits = p.task.options.limits
        if limits is None or not limits.gated:
            return None
        d = p.delivery
        key = None
        if limits.concurrency is not None and limits.concurrency_key is not None:
            try:
                key = str(limits.concurrency_key(p.envelope.args, p.envelope.kwargs))
            except Exception as exc:
                return settle_failure(self.app, d, p.task, p.attempt, p.retries,
                                      type(exc).__name__, f"concurrency_key raised: {exc}")
        try:
            return self._admit(p, limits, key)
        except Exception as exc:  # the backend is away: try again soon, uncounted
            log.warning("%s[%s]: could not check its limits (%s); trying again in %gs",
                        p.task.name, d.id, exc, OUTAGE_WAIT)
            return self._defer(p, self.app.clock.now() + OUTAGE_WAIT, "limits unchecked")

    def _admit(self, p: Prepared, limits: Limits, key: str | None) -> Finished | None:
        d, name = p.delivery, p.task.name
        now = self.app.clock.now()
        owner = f"{d.id}:{d.token}"
        slot = None
        if limits.concurrency is not None:
            slot = self._take_slot(slot_keys(name, limits.concurrency, key), owner, now)
            base = f"{name}:{key}"
            if slot is None:
                return self._defer(p, now + self._busy_wait(name, base), "concurrency")
            with PROCESS.lock:
                PROCESS.refusals.pop(base, None)
        if limits.rate is not None:
            rate = limits.rate
            window = rate.window(now)
            count = self.backend.incr(rate.key(name, window), 1, rate.ttl, now)
            if not rate.admits(count):
                if slot is not None:
                    self.backend.unlock(slot, owner)
                return self._defer(p, rate.defer_until(window, count), f"rate {rate}")
        if slot is not None:
            with PROCESS.lock:
                PROCESS.held[d.id] = (slot, owner, time.monotonic())
        return None

    def _take_slot(self, keys: list[str], owner: str, now: float) -> str | None:
        """The first free slot, probing from a random one (so workers spread over the keys
        instead of all fighting for slot 0) and skipping those this process holds."""
        mine = PROCESS.held_keys()
        start = random.randrange(len(keys))
        for k in keys[start:] + keys[:start]:
            if k not in mine and self.backend.try_lock(k, owner, self.app.lease, now):
                return k
        return None

    def _busy_wait(self, name: str, base: str) -> float:
        """A growing wait for a start that found every slot taken: 50 ms doubling with each
        refusal of that key in this process since its last admission, up to the task's recent
        run time (at least 0.25 s, at most 5 s), with jitter so the waiters do not return
        together."""
        with PROCESS.lock:
            n = PROCESS.refusals.get(base, 0) + 1
            if len(PROCESS.refusals) > 10_000:  # many keys: forget, rather than grow
                PROCESS.refusals.clear()
            PROCESS.refusals[base] = n
            run = PROCESS.durations.get(name, 1.0)
        cap = min(BUSY_MAX, max(0.25, run))
        return min(cap, BUSY_FIRST * 2.0 ** min(n - 1, 16)) * random.uniform(0.75, 1.25)

    def _defer(self, p: Prepared, ready_at: float, why: str) -> Finished:
        d = p.delivery
        wait = ready_at - self.app.clock.now()
        log.debug("%s[%s] deferred %.3fs (%s limit)", p.task.name, d.id, wait, why)
        return Finished(Release(d.id, d.token, ready_at, attempted=False), "deferred",
                        f"{why} limit: back in {wait:.3f}s")

    def release(self, p: Prepared) -> None:
        """The run ended: free its concurrency slot (if it holds one)."""
        with PROCESS.lock:
            entry = PROCESS.held.pop(p.delivery.id, None)
            if entry is None:
                return
            key, owner, since = entry
            ran = time.monotonic() - since
            name = p.task.name
            PROCESS.durations[name] = 0.7 * PROCESS.durations.get(name, ran) + 0.3 * ran
        try:
            self.backend.unlock(key, owner)
        except Exception as exc:
            log.warning("could not free concurrency slot %s: %s (it frees itself after the "
                        "lease)", key, exc)


def renew_slots(app: Conveyor, backend: Backend, kept: Iterable[str], now: float) -> None:
    """Heartbeat: extend the concurrency slots of the deliveries whose lease was just
    extended (`kept` ids), for another lease. A delivery whose lease was lost stops renewing
    its slot, which then frees itself."""
    with PROCESS.lock:
        if not PROCESS.held:
            return
        ids = set(kept)
        entries = [(i, k, o) for i, (k, o, _) in PROCESS.held.items() if i in ids]
    for mid, key, owner in entries:
        try:
            if not backend.try_lock(key, owner, app.lease, now):
                log.warning("task %s lost its concurrency slot %s (another run may start)",
                            mid, key)
        except Exception as exc:  # the backend is away: the next beat tries again
            log.debug("could not renew concurrency slot %s: %s", key, exc)
            return


def free_slots(app: Conveyor, task: str, id: str, token: str) -> None:
    """After the supervisor settled the task of a killed child (time limit, lost child): free
    the concurrency slot it held, if the task has one without `concurrency_key` (the key
    needs the arguments, which the supervisor never reads; such a slot frees itself after
    the lease)."""
    t = app.tasks.get(task)
    limits = t.options.limits if t is not None else None
    if limits is None or limits.concurrency is None or limits.concurrency_key is not None:
        return
    owner = f"{id}:{token}"
    try:
        for k in slot_keys(task, limits.concurrency):
            if app.backend.unlock(k, owner):
                return
    except Exception as exc:
        log.warning("could not free the concurrency slot of %s: %s", id, exc)
