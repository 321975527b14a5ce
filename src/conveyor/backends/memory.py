"""memory:// — the reference semantics of the Backend interface, in one process.

Used by users' tests (`app.drain()`, thread pools) and as the model the other backends are held
to by the conformance suite. Everything happens under one lock.
"""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .base import (
    FAILURE,
    PROGRESS,
    READY,
    REVOKED,
    RUNNING,
    SCHEDULED_KIND,
    Ack,
    Backend,
    Bury,
    DeadLetter,
    Delivery,
    Message,
    MessageRecord,
    QueueStats,
    Release,
    ResultRecord,
    Settlement,
    StoredResult,
    TaskRecord,
    WorkerInfo,
    check_kind,
    derived_state,
    result_states,
)


@dataclass(slots=True)
class _Msg:
    id: str
    queue: str
    body: bytes
    priority: int
    ready_at: float
    seq: int
    dedup_key: str | None
    dedup_retention: float
    delivery_count: int = 0
    token: str | None = None
    lease_until: float = 0.0
    dead: bool = False
    reason: str = ""
    died_at: float = 0.0
    revoked: int = 0  # 1 revoked while running, 2 also asked to stop (terminate)
    progress: tuple[str, bytes, float] | None = None  # (token, data, updated_at)
    enqueued_at: float = 0.0
    worker: str = ""  # who holds the lease (set by each claim)


class MemoryBackend(Backend):
    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)  # an enqueue or a settle happened
        self._seq = itertools.count(1)
        self._messages: dict[str, _Msg] = {}
        self._ready: dict[str, list[tuple[int, int, str]]] = {}  # queue -> heap(-prio, seq, id)
        self._delayed: list[tuple[float, int, str]] = []  # heap(ready_at, seq, id)
        self._leased: dict[str, _Msg] = {}
        self._results: dict[str, tuple[StoredResult, float]] = {}
        self._dedup: dict[str, tuple[str, float | None]] = {}
        self._locks: dict[str, tuple[str, float]] = {}
        self._counters: dict[str, tuple[int, float]] = {}
        self._workers: dict[str, tuple[WorkerInfo, float]] = {}

    # --- internal helpers -----------------------------------------------------------------
    def _schedule(self, msg: _Msg, now: float) -> None:
        if msg.ready_at <= now:
            heapq.heappush(self._ready.setdefault(msg.queue, []), (-msg.priority, msg.seq, msg.id))
        else:
            heapq.heappush(self._delayed, (msg.ready_at, msg.seq, msg.id))

    def _promote(self, now: float) -> None:
        while self._delayed and self._delayed[0][0] <= now:
            _, seq, mid = heapq.heappop(self._delayed)
            msg = self._messages.get(mid)
            if msg and not msg.dead and msg.token is None and msg.seq == seq and msg.ready_at <= now:
                heapq.heappush(self._ready.setdefault(msg.queue, []), (-msg.priority, seq, mid))
        for mid, msg in list(self._leased.items()):
            if msg.lease_until <= now:
                # The token stays until a claim takes the message: a slow holder may still
                # settle or extend it while nobody else has.
                del self._leased[mid]
                heapq.heappush(self._ready.setdefault(msg.queue, []), (-msg.priority, msg.seq, mid))

    def _release_key(self, msg: _Msg, now: float) -> None:
        if msg.dedup_key is None:
            return
        held = self._dedup.get(msg.dedup_key)
        if held and held[0] == msg.id:
            if msg.dedup_retention > 0:
                self._dedup[msg.dedup_key] = (msg.id, now + msg.dedup_retention)
            else:
                del self._dedup[msg.dedup_key]

    def _store(self, id: str, state: str, data: bytes | None, ttl: float, now: float) -> None:
        self._results[id] = (StoredResult(id, state, data, now), now + ttl)

    # --- producer -------------------------------------------------------------------------
    def enqueue(self, messages: Sequence[Message], now: float) -> list[str]:
        out: list[str] = []
        with self._lock:
            for m in messages:
                if m.dedup_key is not None:
                    held = self._dedup.get(m.dedup_key)
                    if held and (held[1] is None or held[1] > now):
                        out.append(held[0])
                        continue
                if m.id in self._messages:  # that id is already queued (or dead)
                    out.append(m.id)
                    continue
                if m.dedup_key is not None:
                    self._dedup[m.dedup_key] = (m.id, None)
                msg = _Msg(m.id, m.queue, bytes(m.body), m.priority, m.ready_at, next(self._seq),
                           m.dedup_key, m.dedup_retention, enqueued_at=now)
                self._messages[m.id] = msg
                self._results.pop(m.id, None)
                self._schedule(msg, now)
                out.append(m.id)
            self._changed.notify_all()
        return out

    # --- consumer -------------------------------------------------------------------------
    def claim(self, queues: Sequence[str] | None, worker_id: str, now: float, lease_for: float,
              limit: int) -> list[Delivery]:
        out: list[Delivery] = []
        with self._lock:
            self._promote(now)
            names = list(self._ready) if queues is None else list(queues)
            while len(out) < limit:
                best: tuple[int, int, str] | None = None
                best_q = ""
                for q in names:
                    heap = self._ready.get(q)
                    while heap:
                        _, seq, mid = heap[0]
                        msg = self._messages.get(mid)
                        if (msg is None or msg.dead or msg.seq != seq or msg.ready_at > now
                                or (msg.token is not None and msg.lease_until > now)):
                            heapq.heappop(heap)
                            if (msg is not None and not msg.dead and msg.seq == seq
                                    and msg.token is None and msg.ready_at > now):
                                # Ready when enqueued, but this claim's `now` was read before
                                # that (a caller that waited for the lock): keep it, not drop it.
                                heapq.heappush(self._delayed, (msg.ready_at, seq, mid))
                            continue
                        break
                    if heap and (best is None or heap[0] < best):
                        best, best_q = heap[0], q
                if best is None:
                    break
                heapq.heappop(self._ready[best_q])
                msg = self._messages[best[2]]
                msg.delivery_count += 1
                msg.token = os.urandom(8).hex()
                msg.lease_until = now + lease_for
                msg.worker = worker_id
                self._leased[msg.id] = msg
                out.append(Delivery(msg.id, msg.queue, msg.body, msg.priority,
                                    msg.delivery_count, msg.token, msg.lease_until))
        return out

    def extend(self, leases: Sequence[tuple[str, str]], now: float,
               lease_for: float) -> set[str]:
        held: set[str] = set()
        with self._lock:
            for mid, token in leases:
                msg = self._messages.get(mid)
                if msg is not None and not msg.dead and msg.token == token:
                    msg.lease_until = now + lease_for
                    self._leased[mid] = msg  # it may have been promoted: expire it again
                    held.add(token)
        return held

    def settle(self, settlements: Sequence[Settlement], now: float) -> list[bool]:
        out: list[bool] = []
        with self._lock:
            for s in settlements:
                msg = self._messages.get(s.id)
                if msg is None or msg.dead or msg.token is None or msg.token != s.token:
                    out.append(False)
                    continue
                self._leased.pop(msg.id, None)
                if isinstance(s, Ack):
                    del self._messages[msg.id]
                    self._release_key(msg, now)
                    if s.data is not None:
                        self._store(msg.id, s.state, s.data, s.result_ttl, now)
                elif isinstance(s, Release):
                    msg.token = None
                    msg.ready_at = s.ready_at
                    msg.seq = next(self._seq) if s.attempted else msg.seq
                    if s.body is not None:
                        msg.body = bytes(s.body)
                    if not s.attempted:
                        msg.delivery_count = max(0, msg.delivery_count - 1)
                    self._schedule(msg, now)
                elif isinstance(s, Bury):
                    msg.token = None
                    msg.dead = True
                    msg.reason = s.reason
                    msg.died_at = now
                    self._release_key(msg, now)
                    self._store(msg.id, FAILURE, s.data, s.result_ttl, now)
                out.append(True)
            self._changed.notify_all()
        return out

    def wait_for_work(self, queues: Sequence[str] | None, timeout: float) -> None:
        if timeout > 0:
            with self._changed:
                self._changed.wait(timeout)

    def wait(self, ids: Sequence[str], timeout: float | None, now_fn: Any = time.time,
             ) -> dict[str, StoredResult]:
        def pause(seconds: float) -> None:
            with self._changed:
                self._changed.wait(seconds)

        return self.poll_results(ids, timeout, now_fn, pause, 0.001)

    # --- results --------------------------------------------------------------------------
    def get_results(self, ids: Sequence[str], now: float) -> dict[str, StoredResult]:
        out: dict[str, StoredResult] = {}
        with self._lock:
            for i in ids:
                msg = self._messages.get(i)
                if msg is not None and not msg.dead:
                    leased = msg.token is not None and msg.lease_until > now
                    if leased and msg.progress is not None and msg.progress[0] == msg.token:
                        out[i] = StoredResult(i, PROGRESS, msg.progress[1], msg.progress[2])
                        continue
                    out[i] = StoredResult(i, derived_state(msg.ready_at, msg.delivery_count,
                                                           leased, now))
                    continue
                stored = self._results.get(i)
                if stored is not None and stored[1] > now:
                    out[i] = stored[0]
                elif msg is not None:
                    out[i] = StoredResult(i, FAILURE, None, msg.died_at)
        return out

    # --- progress and revocation ----------------------------------------------------------
    def set_progress(self, id: str, token: str, data: bytes, now: float) -> bool:
        with self._lock:
            msg = self._messages.get(id)
            if msg is None or msg.dead or msg.token is None or msg.token != token:
                return False
            msg.progress = (token, bytes(data), now)
            return True

    def revoke(self, ids: Sequence[str], now: float, terminate: bool, data: bytes,
               result_ttl: float) -> list[bool]:
        out: list[bool] = []
        with self._lock:
            for i in ids:
                msg = self._messages.get(i)
                if msg is None or msg.dead:
                    out.append(False)
                elif msg.token is not None and msg.lease_until > now:
                    msg.revoked = max(msg.revoked, 2 if terminate else 1)
                    out.append(True)
                else:  # waiting: it never runs (again)
                    del self._messages[i]
                    self._leased.pop(i, None)
                    self._release_key(msg, now)
                    self._store(i, REVOKED, data, result_ttl, now)
                    out.append(True)
            self._changed.notify_all()
        return out

    def revoked(self, ids: Sequence[str]) -> dict[str, bool]:
        with self._lock:
            return {i: msg.revoked == 2 for i in ids
                    if (msg := self._messages.get(i)) is not None and not msg.dead
                    and msg.revoked}

    # --- coordination ---------------------------------------------------------------------
    def try_lock(self, key: str, owner: str, ttl: float, now: float) -> bool:
        with self._lock:
            held = self._locks.get(key)
            if held is None or held[1] <= now or held[0] == owner:
                self._locks[key] = (owner, now + ttl)
                return True
            return False

    def unlock(self, key: str, owner: str) -> bool:
        with self._lock:
            held = self._locks.get(key)
            if held is not None and held[0] == owner:
                del self._locks[key]
                return True
            return False

    def incr(self, key: str, by: int, ttl: float, now: float) -> int:
        with self._lock:
            return self._add(key, by, ttl, now)

    def _add(self, key: str, by: int, ttl: float, now: float) -> int:
        """Under the lock: `incr` (a counter whose window ran out starts again)."""
        value, expires = self._counters.get(key, (0, 0.0))
        if expires <= now:
            value, expires = 0, now + ttl
        self._counters[key] = (value + by, expires)
        return value + by

    def incr_many(self, increments: Sequence[tuple[str, int, float]], now: float) -> None:
        with self._lock:
            for key, by, ttl in increments:
                self._add(key, by, ttl, now)

    def read_counters(self, keys: Sequence[str], now: float) -> dict[str, int]:
        with self._lock:
            found = {k: self._counters.get(k) for k in keys}
        return {k: c[0] for k, c in found.items() if c is not None and c[1] > now}

    # --- administration -------------------------------------------------------------------
    def queue_stats(self, now: float) -> dict[str, QueueStats]:
        counts: dict[str, list[int]] = {}
        with self._lock:
            for msg in self._messages.values():
                if msg.dead:
                    continue
                c = counts.setdefault(msg.queue, [0, 0, 0])
                if msg.token is not None and msg.lease_until > now:
                    c[2] += 1
                elif msg.ready_at > now:
                    c[1] += 1
                else:
                    c[0] += 1
        return {q: QueueStats(*c) for q, c in sorted(counts.items())}

    def dead_letters(self, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        with self._lock:
            dead = sorted((m for m in self._messages.values() if m.dead),
                          key=lambda m: (m.died_at, m.seq))
            return [DeadLetter(m.id, m.queue, m.body, m.reason, m.died_at, m.delivery_count)
                    for m in dead[offset:offset + limit]]

    def count_dead(self) -> int:
        with self._lock:
            return sum(1 for m in self._messages.values() if m.dead)

    def retry_dead(self, ids: Sequence[str] | None, now: float) -> list[str]:
        out: list[str] = []
        with self._lock:
            targets = (sorted((m for m in self._messages.values() if m.dead),
                              key=lambda m: (m.died_at, m.seq)) if ids is None
                       else [m for i in ids if (m := self._messages.get(i)) and m.dead])
            for msg in targets:
                msg.dead = False
                msg.reason = ""
                msg.delivery_count = 0
                msg.ready_at = now
                msg.seq = next(self._seq)
                msg.dedup_key = None
                msg.revoked = 0
                self._results.pop(msg.id, None)
                self._schedule(msg, now)
                out.append(msg.id)
        return out

    def purge_dead(self, ids: Sequence[str] | None = None) -> int:
        with self._lock:
            doomed = [m.id for m in self._messages.values()
                      if m.dead and (ids is None or m.id in ids)]
            for i in doomed:
                del self._messages[i]
            return len(doomed)

    def list_messages(self, kind: str, queue: str | None, now: float, limit: int = 100,
                      offset: int = 0) -> list[MessageRecord]:
        check_kind(kind)
        with self._lock:
            found = [m for m in self._messages.values()
                     if not m.dead and (queue is None or m.queue == queue)
                     and _kind(m, now) == kind]
            if kind == READY:
                found.sort(key=lambda m: (-m.priority, m.seq))
            elif kind == RUNNING:
                found.sort(key=lambda m: (m.lease_until, m.seq))
            else:
                found.sort(key=lambda m: (m.ready_at, m.seq))
            return [_record(m, now) for m in found[offset:offset + max(0, limit)]]

    def list_results(self, state: str | None, now: float, limit: int = 100,
                     offset: int = 0) -> list[ResultRecord]:
        states = result_states(state)
        with self._lock:
            found = [ResultRecord(r.id, r.state, r.data, r.updated_at, exp)
                     for r, exp in self._results.values()
                     if exp > now and r.state in states and r.id not in self._messages]
        found.sort(key=lambda r: (r.expires_at, r.id), reverse=True)
        return found[offset:offset + max(0, limit)]

    def _shows_result(self, id: str) -> bool:
        msg = self._messages.get(id)
        return msg is None or msg.dead

    def task_record(self, id: str, now: float) -> TaskRecord | None:
        with self._lock:
            msg = self._messages.get(id)
            stored = self._results.get(id)
            result = None
            if stored is not None and stored[1] > now and self._shows_result(id):
                r = stored[0]
                result = ResultRecord(id, r.state, r.data, r.updated_at, stored[1])
            if msg is None and result is None:
                return None
            dead = None
            if msg is not None and msg.dead:
                dead = DeadLetter(msg.id, msg.queue, msg.body, msg.reason, msg.died_at,
                                  msg.delivery_count)
            return TaskRecord(id, None if msg is None else _record(msg, now), dead, result)

    def purge(self, queue: str | None, now: float) -> int:
        with self._lock:
            doomed = [m for m in self._messages.values()
                      if not m.dead and (m.token is None or m.lease_until <= now)
                      and (queue is None or m.queue == queue)]
            for msg in doomed:
                del self._messages[msg.id]
                self._release_key(msg, now)
            return len(doomed)

    def put_worker(self, worker: WorkerInfo, now: float, ttl: float) -> None:
        with self._lock:
            self._workers[worker.id] = (WorkerInfo(worker.id, dict(worker.info), now), now + ttl)

    def remove_worker(self, worker_id: str) -> None:
        with self._lock:
            self._workers.pop(worker_id, None)

    def workers(self, now: float) -> list[WorkerInfo]:
        with self._lock:
            return [w for w, exp in sorted(self._workers.values(), key=lambda x: x[0].id)
                    if exp > now]

    def housekeeping(self, now: float) -> None:
        with self._lock:
            for table in (self._results, self._locks, self._counters, self._workers):
                for k in [k for k, v in table.items() if v[1] <= now]:  # type: ignore[attr-defined]
                    del table[k]  # type: ignore[attr-defined]
            for k in [k for k, v in self._dedup.items() if v[1] is not None and v[1] <= now]:
                del self._dedup[k]


def _kind(msg: _Msg, now: float) -> str:
    """Which `list_messages` kind a live (not dead) message is now."""
    if msg.token is not None and msg.lease_until > now:
        return RUNNING
    return SCHEDULED_KIND if msg.ready_at > now else READY


def _record(msg: _Msg, now: float) -> MessageRecord:
    live = not msg.dead and msg.token is not None and msg.lease_until > now
    return MessageRecord(msg.id, msg.queue, msg.body, msg.priority, msg.ready_at,
                         msg.delivery_count, msg.enqueued_at,
                         msg.lease_until if live else None, msg.worker if live else None)
