"""redis://, rediss://, unix:// — many machines on one Redis.

Every state change is one Lua script (scripts/*.lua; the key layout is described at the top
of scripts/common.lua), called by SHA in one round trip. Time always comes from the caller's
`now`, never from the server or from key TTLs: expiries are explicit timestamps, and
`housekeeping` drops what ran out through one expiry index. Nothing polls: an idle worker
thread listens on a channel of its own and stands on its queues' idle lists, and an enqueue
(or a give-back) tells one idle worker per ready message; a stored result is published on
`<prefix>:done:<id>`, with the result itself when it is small. Each thread has one RESP3
connection (resp.py) for its calls and its subscriptions.

URL options (removed before the rest goes to redis-py): `prefix=` (default `conveyor`: every
key starts with `<prefix>:`) and `timeout=` seconds (default 5, connect and command timeout).
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from ...errors import BackendUnavailable
from ..base import (
    FAILURE,
    PROGRESS,
    TERMINAL_STATES,
    Ack,
    DeadLetter,
    Delivery,
    Message,
    MessageRecord,
    QueueStats,
    Release,
    ResultRecord,
    SettleAndClaimBackend,
    Settlement,
    StoredResult,
    TaskRecord,
    WorkerInfo,
    check_kind,
    derived_state,
    result_states,
)
from .wire import Wire, hide, load_scripts

CHUNK = 500  # messages per call of the administrative scripts that may touch many
RECHECK_FIRST = 0.05  # a waiting get() re-reads its results this often at first...
RECHECK_MAX = 1.0  # ...then ever less often: wake-ups do the work, this is the safety net
MANY_IDS = 64  # waiting for more ids than this listens to one pattern, not a channel each
_SCRIPTS = ("enqueue", "settle_claim", "extend", "results", "coord", "admin", "control",
            "tasks")
#: How many entries of the expiry index (results, dedup keys, locks, counters, latest expiry
#: first) one `list_results` call looks at: a page deep in a long history, or of a rare state,
#: may come back short rather than block Redis (a live dashboard asks every 2 s, and every
#: worker waits while a script runs; 5,000 entries take a few milliseconds).
RESULTS_SCAN = 5_000

Keys = frozenset[tuple[str, bytes]]


class RedisBackend(SettleAndClaimBackend):
    has_server = True
    idle_wait_max = 1.0  # enqueues wake idle workers through Redis; this is the safety net

    def __init__(self, url: str = "redis://127.0.0.1:6379/0") -> None:
        self.url = url
        self._wire = Wire(url)  # validates the URL; connects on first use
        self.prefix = self._wire.prefix
        self._scripts = load_scripts(*_SCRIPTS)
        self._enqueue = self._scripts["enqueue"]
        self._settle_claim = self._scripts["settle_claim"]
        self._done_prefix = f"{self.prefix}:done:".encode()

    def close(self) -> None:
        self._wire.close()

    def _admin(self, now: float, *args: Any) -> Any:
        return self._wire.call(self._scripts["admin"], [now, *args])

    def _key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    # --- producer -------------------------------------------------------------------------
    def enqueue(self, messages: Sequence[Message], now: float) -> list[str]:
        if not messages:
            return []
        args: list[Any] = [now]
        for m in messages:
            args += (m.id, m.queue, m.body, -m.priority, m.ready_at,
                     "" if m.dedup_key is None else "k" + m.dedup_key, m.dedup_retention)
        return [i.decode() for i in self._wire.call(self._enqueue, args)]

    # --- consumer -------------------------------------------------------------------------
    def settle_and_claim(self, settlements: Sequence[Settlement], queues: Sequence[str] | None,
                         worker_id: str, now: float, lease_for: float, limit: int,
                         ) -> tuple[list[bool], list[Delivery]]:
        names = None if queues is None else tuple(dict.fromkeys(queues))
        if names == () or limit <= 0:
            limit = 0
            if not settlements:
                return [], []
        until = now + lease_for
        st = self._wire.state()
        conn = st.conn
        me = st.me if limit and conn.wanted("work") else b""  # an idle worker's channel
        args: list[Any] = [now, until, limit, os.urandom(6).hex() + ".", me,
                           b"1" if st.registered else b"0", len(settlements)]
        for s in settlements:
            if isinstance(s, Ack):
                args += ("A", s.id, s.token, b"0" if s.data is None else b"1", s.data or b"",
                         s.state, now + s.result_ttl)
            elif isinstance(s, Release):
                args += ("R", s.id, s.token, s.ready_at, b"0" if s.body is None else b"1",
                         s.body or b"", b"1" if s.attempted else b"0")
            else:
                args += ("B", s.id, s.token, s.reason, b"0" if s.data is None else b"1",
                         s.data or b"", now + s.result_ttl)
        if limit:
            args += _queue_args(names)
        reply = self._wire.call(self._settle_claim, args)
        done = [flag == 49 for flag in reply[0]]  # b"1"
        if not limit:
            return done, []
        rest = reply[2:]
        batch = [Delivery(rest[i].decode(), rest[i + 1].decode(), rest[i + 2], -int(rest[i + 3]),
                          int(rest[i + 4]), rest[i + 5].decode(), until)
                 for i in range(0, len(rest), 6)]
        if me:
            st.registered = not batch
            if conn.events:  # wake-ups published before this claim ran: it saw their work
                conn.events = deque(e for e in conn.events if e[1] != me)
        st.stash = (names, reply[1].decode(), conn.generation) if st.registered else None
        return done, batch

    def extend(self, leases: Sequence[tuple[str, str]], now: float,
               lease_for: float) -> set[str]:
        if not leases:
            return set()
        args: list[Any] = [now, now + lease_for]
        for mid, token in leases:
            args += (mid, token)
        return {t.decode() for t in self._wire.call(self._scripts["extend"], args)}

    # --- waiting --------------------------------------------------------------------------
    def _keys(self, prefix: bytes, names: Sequence[str] | None) -> Keys:
        """Channels `prefix + name`, or (names None: anything) a pattern."""
        if names is None:
            escaped = b"".join(b"\\" + bytes([c]) if c in b"*?[]\\" else bytes([c])
                               for c in prefix)
            return frozenset({("p", escaped + b"*")})
        return frozenset(("c", prefix + n.encode()) for n in names)

    def wait_for_work(self, queues: Sequence[str] | None, timeout: float) -> None:
        """Block until work may be ready, the next delayed message or expired lease is due,
        or `timeout` passes. The thread listens on a channel of its own; a claim that finds
        nothing puts it on its queues' idle lists, and an enqueue wakes one idle worker per
        ready message (no herd). So the loop claim-nothing -> wait costs no extra round trip.
        Never raises: an outage shows in the next claim."""
        if timeout <= 0:
            return
        names = None if queues is None else tuple(dict.fromkeys(queues))
        if names == ():
            time.sleep(timeout)
            return
        deadline = time.monotonic() + timeout
        try:
            with self._wire.guard():
                self._wait_for_work(names, deadline)
        except BackendUnavailable:
            time.sleep(max(0.0, deadline - time.monotonic()))

    def _wait_for_work(self, names: tuple[str, ...] | None, deadline: float) -> None:
        st = self._wire.state()
        conn = st.conn
        keys = frozenset({("c", st.me)})
        stash, st.stash = st.stash, None
        if (stash is not None and stash[0] == names and stash[2] == conn.generation
                and st.registered and conn.wanted("work") == keys):
            earliest = stash[1]  # the last claim found nothing and put us on the idle lists
        else:  # listen, then get on the idle lists and look (the subscription goes first)
            conn.want("work", keys)
            earliest = self._admin(time.time(), "peek", st.me, *_queue_args(names)).decode()
            st.registered = True
        if earliest:
            due = float(earliest)
            if due == 0:
                return
            deadline = min(deadline, time.monotonic() + due - time.time())
        while (event := conn.wait_event(deadline)) is not None:
            if event[3] and event[0] in keys:
                return

    def wait(self, ids: Sequence[str], timeout: float | None, now_fn: Any = time.time,
             ) -> dict[str, StoredResult]:
        """Subscribe to each id's channel and read, in one round trip; then block until the
        worker's ack publishes (small results travel in the message itself, so a woken caller
        rarely reads again). A slow re-read (50 ms growing to 1 s) is the safety net."""
        ids = list(ids)
        if not ids or (timeout is not None and timeout <= 0):
            return self.get_results(ids, now_fn())
        deadline = None if timeout is None else time.monotonic() + timeout
        waiting = set(ids)
        keys = self._keys(self._done_prefix, None if len(waiting) > MANY_IDS else ids)
        conn = self._wire.state().conn
        with self._wire.guard():
            conn.want("results", keys)
            try:
                found = self.get_results(ids, now_fn())
                interval = RECHECK_FIRST
                while not _finished(ids, found):
                    now = time.monotonic()
                    if deadline is not None and now >= deadline:
                        break
                    step = now + interval if deadline is None else min(deadline, now + interval)
                    event = conn.wait_event(step)
                    if event is None:
                        interval = min(interval * 2, RECHECK_MAX)
                        found = self.get_results(ids, now_fn())
                        continue
                    key, channel, data, fresh = event
                    mid = channel[len(self._done_prefix):].decode(errors="replace")
                    if not fresh or key not in keys or mid not in waiting:
                        continue
                    stored = _note(mid, data, now_fn())
                    if stored is None:
                        found = self.get_results(ids, now_fn())
                    else:
                        found[mid] = stored
            finally:
                conn.want("results", frozenset())  # sent with this thread's next call
        return found

    # --- results --------------------------------------------------------------------------
    def get_results(self, ids: Sequence[str], now: float) -> dict[str, StoredResult]:
        if not ids:
            return {}
        ids = list(ids)
        reply = self._wire.call(self._scripts["results"], [now, *ids])
        out: dict[str, StoredResult] = {}
        for n, mid in enumerate(ids):
            (ready_at, count, token, until, dead, died, state, data, updated, expires,
             progress, progress_at) = reply[n * 12:n * 12 + 12]
            if ready_at is not None and dead is None:
                leased = token is not None and float(until) > now
                if leased and progress is not None:
                    out[mid] = StoredResult(mid, PROGRESS, progress, float(progress_at))
                    continue
                out[mid] = StoredResult(mid, derived_state(float(ready_at), int(count or 0),
                                                           leased, now))
            elif state is not None and float(expires) > now:
                out[mid] = StoredResult(mid, state.decode(), data, float(updated))
            elif dead is not None:
                out[mid] = StoredResult(mid, FAILURE, None, float(died))
        return out

    # --- progress and revocation ----------------------------------------------------------
    def set_progress(self, id: str, token: str, data: bytes, now: float) -> bool:
        return bool(self._wire.call(self._scripts["control"],
                                    [now, "progress", id, token, data]))

    def revoke(self, ids: Sequence[str], now: float, terminate: bool, data: bytes,
               result_ttl: float) -> list[bool]:
        if not ids:
            return []
        reply = self._wire.call(self._scripts["control"],
                                [now, "revoke", "2" if terminate else "1", data,
                                 now + result_ttl, *ids])
        return [flag == b"1" for flag in reply]

    def revoked(self, ids: Sequence[str]) -> dict[str, bool]:
        if not ids:
            return {}
        ids = list(ids)
        reply = self._wire.call(self._scripts["control"], [0, "revoked", *ids])
        return {i: mark == b"2" for i, mark in zip(ids, reply, strict=True) if mark}

    # --- coordination ---------------------------------------------------------------------
    def try_lock(self, key: str, owner: str, ttl: float, now: float) -> bool:
        return bool(self._wire.call(self._scripts["coord"],
                                    [now, "lock", key, owner, now + ttl]))

    def unlock(self, key: str, owner: str) -> bool:
        return bool(self._wire.call(self._scripts["coord"], [0, "unlock", key, owner]))

    def incr(self, key: str, by: int, ttl: float, now: float) -> int:
        return int(self._wire.call(self._scripts["coord"], [now, "incr", key, by, now + ttl]))

    def incr_many(self, increments: Sequence[tuple[str, int, float]], now: float) -> None:
        if not increments:
            return
        flat: list[Any] = [now, "incrs"]
        for key, by, ttl in increments:  # one script: atomic (a second of a worker's counts)
            flat += [key, by, now + ttl]
        self._wire.call(self._scripts["coord"], flat)

    def read_counters(self, keys: Sequence[str], now: float) -> dict[str, int]:
        keys = list(dict.fromkeys(keys))
        out: dict[str, int] = {}
        for i in range(0, len(keys), CHUNK):
            flat = self._wire.call(self._scripts["coord"], [now, "read", *keys[i:i + CHUNK]])
            out.update((flat[j].decode(), int(flat[j + 1])) for j in range(0, len(flat), 2))
        return out

    # --- administration -------------------------------------------------------------------
    def queue_stats(self, now: float) -> dict[str, QueueStats]:
        flat = self._admin(now, "stats")
        stats = {flat[i].decode(): QueueStats(int(flat[i + 1]), int(flat[i + 2]),
                                              int(flat[i + 3]))
                 for i in range(0, len(flat), 4)}
        return dict(sorted(stats.items()))

    def dead_letters(self, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        flat = self._admin(0, "dead", offset, limit)
        return [DeadLetter(flat[i].decode(), flat[i + 1].decode(), flat[i + 2],
                           (flat[i + 3] or b"").decode(), float(flat[i + 4]), int(flat[i + 5]))
                for i in range(0, len(flat), 6)]

    def count_dead(self) -> int:
        return int(self._wire.command("ZCARD", self._key("dead")))

    def list_messages(self, kind: str, queue: str | None, now: float, limit: int = 100,
                      offset: int = 0) -> list[MessageRecord]:
        """See Backend; Redis keeps no enqueue time and no lease holder (both None)."""
        flat = self._wire.call(self._scripts["tasks"], [now, "messages", check_kind(kind),
                                                        queue or "", max(0, limit),
                                                        max(0, offset)])
        return [MessageRecord(flat[i].decode(), flat[i + 1].decode(), flat[i + 2],
                              -int(flat[i + 3]), float(flat[i + 4]), int(flat[i + 5]), None,
                              float(flat[i + 6]) if flat[i + 6] else None)
                for i in range(0, len(flat), 7)]

    def list_results(self, state: str | None, now: float, limit: int = 100,
                     offset: int = 0) -> list[ResultRecord]:
        """See Backend. Looks at RESULTS_SCAN entries of the expiry index at most."""
        want = "" if state is None else result_states(state)[0]
        flat = self._wire.call(self._scripts["tasks"], [now, "results", want, max(0, limit),
                                                        max(0, offset), RESULTS_SCAN])
        return [ResultRecord(flat[i].decode(), flat[i + 1].decode(), flat[i + 2],
                             float(flat[i + 3]), float(flat[i + 4]))
                for i in range(0, len(flat), 5)]

    def task_record(self, id: str, now: float) -> TaskRecord | None:
        f = self._wire.call(self._scripts["tasks"], [now, "record", id])
        q, body, score, ready_at, count, token, lease, dead, why, died_at = f[:10]
        msg = dead_letter = result = None
        if q is not None:
            live = token is not None and lease is not None and float(lease) > now and not dead
            msg = MessageRecord(id, q.decode(), body, -int(score), float(ready_at),
                                int(count or 0), None, float(lease) if live else None)
            if dead:
                dead_letter = DeadLetter(id, q.decode(), body, (why or b"").decode(),
                                         float(died_at), int(count or 0))
        state, data, updated, expires = f[11:15]
        if state is not None and float(expires) > now and (msg is None or dead_letter):
            result = ResultRecord(id, state.decode(), data, float(updated), float(expires))
        if msg is None and result is None:
            return None
        return TaskRecord(id, msg, dead_letter, result)

    def _dead_op(self, op: str, ids: Sequence[str] | None, now: float) -> list[str]:
        out: list[str] = []
        if ids is None:
            while True:
                got = self._admin(now, op, "all", CHUNK)
                out += (i.decode() for i in got)
                if len(got) < CHUNK:
                    return out
        ids = list(ids)
        for i in range(0, len(ids), CHUNK):
            out += (x.decode() for x in self._admin(now, op, "ids", *ids[i:i + CHUNK]))
        return out

    def retry_dead(self, ids: Sequence[str] | None, now: float) -> list[str]:
        return self._dead_op("retry", ids, now)

    def purge_dead(self, ids: Sequence[str] | None = None) -> int:
        return len(self._dead_op("purgedead", ids, 0))

    def purge(self, queue: str | None, now: float) -> int:
        where = (-1,) if queue is None else (1, queue)
        total = 0
        while True:
            n = int(self._admin(now, "purge", CHUNK, *where))
            total += n
            if n == 0:
                return total

    def put_worker(self, worker: WorkerInfo, now: float, ttl: float) -> None:
        entry = json.dumps({"info": worker.info, "seen": now, "x": now + ttl})
        self._wire.command("HSET", self._key("workers"), worker.id, entry)

    def remove_worker(self, worker_id: str) -> None:
        self._wire.command("HDEL", self._key("workers"), worker_id)

    def _worker_entries(self) -> list[tuple[str, dict[str, Any]]]:
        entries = self._wire.command("HGETALL", self._key("workers"))  # a map in RESP3
        return [(k.decode(), json.loads(v)) for k, v in entries.items()]

    def workers(self, now: float) -> list[WorkerInfo]:
        return [WorkerInfo(wid, e["info"], e["seen"]) for wid, e in sorted(self._worker_entries())
                if e["x"] > now]

    def housekeeping(self, now: float) -> None:
        while int(self._admin(now, "hk", CHUNK)) >= CHUNK:
            pass
        gone = [wid for wid, e in self._worker_entries() if e["x"] <= now]
        if gone:
            self._wire.command("HDEL", self._key("workers"), *gone)

    def startup_warnings(self) -> list[str]:
        from redis.exceptions import ResponseError

        try:
            reply = self._wire.command("CONFIG", "GET", "maxmemory-policy")
        except BackendUnavailable:
            raise
        except ResponseError:  # CONFIG is disabled or forbidden here: nothing to check
            return []
        policy = (reply.get(b"maxmemory-policy") or b"").decode()  # a map in RESP3
        if not policy.startswith("allkeys-"):
            return []
        return [f"Redis at {hide(self.url)} has maxmemory-policy {policy}: when it runs out "
                "of memory it may evict queued tasks, leases and results without a trace. Set "
                "`maxmemory-policy noeviction` (redis.conf, or CONFIG SET maxmemory-policy "
                "noeviction), so a full Redis refuses writes instead."]


def _queue_args(names: tuple[str, ...] | None) -> tuple[Any, ...]:
    return (-1,) if names is None else (len(names), *names)


def _finished(ids: Sequence[str], found: dict[str, StoredResult]) -> bool:
    return all(i in found and found[i].state in TERMINAL_STATES for i in ids)


def _note(mid: str, note: bytes, now: float) -> StoredResult | None:
    """The result a wake-up message carries (None: read it from the server instead)."""
    flag = note[:1]
    state, updated, expires, data = note[1:].split(b"\n", 3)
    if flag == b"2" or float(expires) <= now:
        return None
    return StoredResult(mid, state.decode(), data if flag == b"1" else None, float(updated))
