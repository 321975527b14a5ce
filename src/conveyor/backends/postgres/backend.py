"""postgresql:// — many machines, and enqueue inside the application's own transaction.

Every hot call is one statement, so one round trip and one transaction: an enqueue is an
`INSERT ... ON CONFLICT DO NOTHING` that also notifies idle workers (the NOTIFY is part of the
transaction, so it is heard exactly when the message is committed); a worker's settle-and-claim
is one call of the `conveyor_settle_and_claim` function (settles fenced by their tokens, then a
`FOR UPDATE SKIP LOCKED` claim committed at once, so no transaction stays open while a task
runs). Times are the caller's (`now` is passed in), stored as double precision seconds. The
schema and why it looks as it does: schema.sql.

URL: any libpq URL, plus conveyor's own query options `schema=` (default public; created if
missing), `timeout=` seconds (default 5: connect timeout and the statement/lock budget of every
call) and `pool=` (connections per process, default 8). Nothing connects before the first
call; the schema is created or upgraded then, once per process. Connections belong to the
process that opened them: after a fork the child opens its own.

Costs worth knowing: every enqueue commit waits for its WAL flush (fsync), so one producer
thread enqueues at about 1/fsync-time; and PostgreSQL serializes the commits of transactions
that NOTIFY, so many concurrent producers share that rate (measured here: 4 producer processes
~2,200/s with the notification, ~3,200/s without). A producer that may lose its last fraction
of a second of enqueues in a server crash can add `options=-c%20synchronous_commit%3Doff` to
its URL. A claim alone commits without waiting for the flush (see the function).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from ...errors import BackendUnavailable, ConfigError
from ..base import (
    FAILURE,
    PROGRESS,
    READY,
    RUNNING,
    SCHEDULED_KIND,
    TERMINAL_STATES,
    DeadLetter,
    Delivery,
    Message,
    MessageRecord,
    QueueStats,
    ResultRecord,
    SettleAndClaimBackend,
    Settlement,
    StoredResult,
    TaskRecord,
    WorkerInfo,
    check_kind,
    derived_state,
    redact,
    result_states,
)
from . import control, queries
from . import schema as schema_mod
from .connections import (
    Pool,
    Settings,
    connect,
    parse_postgres_url,
    require_psycopg,
    unavailable,
)
from .notify import Listener, Waiter, channel_name
from .queries import settlement_columns

try:
    import psycopg
    from psycopg import errors as pg_errors
except ImportError:  # pragma: no cover - require_psycopg() says what to install
    psycopg = None  # type: ignore[assignment]
    pg_errors = None  # type: ignore[assignment]

T = TypeVar("T")
SAFETY_POLL = 1.0  # seconds: the longest a waiter trusts notifications alone
DEAD = 3
_ORPHANS: list[Any] = []  # a forked child's copies of its parent's pool and listeners


class PostgresBackend(SettleAndClaimBackend):
    has_server = True
    idle_wait_max = SAFETY_POLL  # LISTEN wakes idle workers; this is only the safety net

    def __init__(self, url: str = "postgresql://localhost/postgres") -> None:
        require_psycopg()
        self.url = url
        self.settings: Settings = parse_postgres_url(url)
        s = self.settings.quoted_schema
        self.work_channel = channel_name(self.settings.schema, "work")
        self.done_channel = channel_name(self.settings.schema, "done")
        self._sql = {name: getattr(queries, name.upper()).format(s=s) for name in (
            "enqueue_one", "enqueue_many", "enqueue_keyed", "settle_and_claim", "extend",
            "results", "next_due", "purge")}
        self._sql["enqueue_keyed_binary"] = self._sql["enqueue_keyed"].replace("%s", "%b")
        self._pid = 0
        self._pool: Pool | None = None
        self._listeners: dict[str, Listener] = {}
        self._schema_ready = False
        self._lock = threading.Lock()
        self._local = threading.local()

    # --- connections ----------------------------------------------------------------------
    def _fresh_process(self) -> None:
        """After a fork (or on first use): new lock, pool and listeners for this process; the
        parent's are kept out of the garbage collector's way and never touched."""
        if self._pool is not None or self._listeners:
            _ORPHANS.append((self._pool, self._listeners))
        self._lock = threading.Lock()
        self._local = threading.local()
        self._pool = None
        self._listeners = {}
        self._schema_ready = False
        self._pid = os.getpid()

    def _bare_pool(self) -> Pool:
        """This process's pool (the schema may not exist yet)."""
        if self._pid != os.getpid():
            self._fresh_process()
        pool = self._pool
        if pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = Pool(self.settings)
                pool = self._pool
        return pool

    def _the_pool(self) -> Pool:
        """This process's pool, the schema ready."""
        pool = self._bare_pool()
        if not self._schema_ready:
            self._ensure_schema(pool)
        return pool

    def _ensure_schema(self, pool: Pool) -> None:
        with self._lock:
            if self._schema_ready:
                return
            with self._guard("preparing the schema"), pool.connection() as conn:
                names = schema_mod.applied(conn, self.settings)
                if names is None or schema_mod.latest() not in names:
                    schema_mod.migrate(conn, self.settings)
                else:
                    schema_mod.check_not_newer(names, self.settings)
            self._schema_ready = True

    @contextmanager
    def _guard(self, doing: str = "") -> Iterator[None]:
        """Connection trouble becomes BackendUnavailable, naming the URL and the cause."""
        try:
            yield
        except psycopg.OperationalError as exc:
            raise unavailable(self.settings, exc, doing) from None

    def _run(self, fn: Callable[[Any], T]) -> T:
        """Run `fn(connection)` on a pooled connection (autocommit: each statement is its own
        transaction; use `conn.transaction()` for more). If the schema vanished (dropped by
        hand), it is made again once."""
        for attempt in (1, 2):
            pool = self._the_pool()
            try:
                with self._guard(), pool.connection() as conn:
                    return fn(conn)
            except (pg_errors.UndefinedTable, pg_errors.UndefinedFunction,
                    pg_errors.InvalidSchemaName):
                if attempt == 2:
                    raise
                self._schema_ready = False
        raise AssertionError("unreachable")

    def _rows(self, sql: str, params: Sequence[Any] | dict[str, Any] = (), *,
              binary: bool = False,
              ) -> list[tuple[Any, ...]]:
        def run(conn: Any) -> list[tuple[Any, ...]]:
            with conn.cursor(binary=binary) as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description is not None else []
        return self._run(run)

    def _count(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._run(lambda conn: int(conn.execute(sql, params).rowcount))

    def _t(self, table: str) -> str:
        return f"{self.settings.quoted_schema}.conveyor_{table}"

    def close(self) -> None:
        if self._pid != os.getpid():
            self._fresh_process()
            return
        with self._lock:
            pool, self._pool = self._pool, None
            listeners, self._listeners = self._listeners, {}
            self._schema_ready = False
        for listener in listeners.values():
            listener.stop()
        if pool is not None:
            pool.close()

    # --- schema (the CLI's `conveyor migrate`) --------------------------------------------
    def migrate(self) -> list[str]:
        """Create or upgrade the schema now; returns the migrations applied."""
        with self._guard("migrating"), self._bare_pool().connection() as conn:
            done = schema_mod.migrate(conn, self.settings)
        self._schema_ready = True
        return done

    def schema_version(self) -> int:
        """The number of the last migration applied (0: no conveyor schema there yet)."""
        with self._guard("reading the schema version"), self._bare_pool().connection() as conn:
            names = schema_mod.applied(conn, self.settings)
        return schema_mod.version_of(max(names) if names else None)

    # --- producer -------------------------------------------------------------------------
    def enqueue(self, messages: Sequence[Message], now: float) -> list[str]:
        if not messages:
            return []
        if any(m.dedup_key is not None for m in messages):
            return self._run(lambda conn: self._enqueue_keyed(conn, messages, now, "%b"))
        if len(messages) == 1:
            m = messages[0]
            params: tuple[Any, ...] = (m.id, m.queue, m.priority, m.ready_at, now, m.ready_at,
                                       m.body, now, self.work_channel)
            self._run(lambda conn: conn.execute(self._sql["enqueue_one"], params))
        else:
            params = (now, now, [m.id for m in messages], [m.queue for m in messages],
                      [int(m.priority) for m in messages], [float(m.ready_at) for m in messages],
                      [bytes(m.body) for m in messages], self.work_channel)
            self._run(lambda conn: conn.execute(self._sql["enqueue_many"], params))
        return [m.id for m in messages]

    def _enqueue_keyed(self, conn: Any, messages: Sequence[Message], now: float,
                       placeholder: str = "%s") -> list[str]:
        """Through conveyor_enqueue (dedup keys; any DB-API connection with `%s`)."""
        params = ([m.id for m in messages], [m.queue for m in messages],
                  [int(m.priority) for m in messages], [float(m.ready_at) for m in messages],
                  [bytes(m.body) for m in messages], [m.dedup_key for m in messages],
                  [float(m.dedup_retention) for m in messages], float(now), self.work_channel)
        cur = conn.cursor()
        try:
            cur.execute(self._sql["enqueue_keyed_binary" if placeholder == "%b"
                                  else "enqueue_keyed"], params)
            row = cur.fetchone()
        finally:
            cur.close()
        return [str(i) for i in row[0]]

    def enqueue_in(self, connection: Any, messages: Sequence[Message], now: float) -> list[str]:
        """Enqueue inside the caller's open transaction on `connection` (psycopg 3, or any
        DB-API connection with the %s paramstyle, e.g. psycopg2): the messages exist, and
        idle workers hear of them, only when that transaction commits. Nothing is committed
        here. The schema is made ready first on conveyor's own connection."""
        cursor = getattr(connection, "cursor", None)
        if not callable(cursor) or _is_async(connection):
            raise ConfigError(f"enqueue_in needs an open (synchronous) database connection "
                              f"to {redact(self.url)}, such as a psycopg.Connection; got "
                              f"{type(connection).__name__}")
        if getattr(connection, "closed", False):
            raise ConfigError("enqueue_in got a closed connection")
        if not messages:
            return []
        self._the_pool()  # the schema exists before we write in someone else's transaction
        return self._enqueue_keyed(connection, messages, now)

    # --- consumer -------------------------------------------------------------------------
    def settle_and_claim(self, settlements: Sequence[Settlement], queues: Sequence[str] | None,
                         worker_id: str, now: float, lease_for: float, limit: int,
                         ) -> tuple[list[bool], list[Delivery]]:
        if queues is not None and not queues:
            limit = 0
        if limit > 0:
            waiter = getattr(self._local, "waiter", None)
            if waiter is not None:  # what is enqueued from now on must wake wait_for_work
                waiter.event.clear()
                waiter.interest = None if queues is None else set(queues)
        if not settlements and limit <= 0:
            return [], []
        # Settled in id order (each id's own settles keep theirs), so that two transactions
        # locking the same rows (a lease keeper's extend, a zombie's late settle) never
        # deadlock; the outcomes are put back in the caller's order.
        order = sorted(range(len(settlements)), key=lambda i: settlements[i].id)
        kinds, ids, tokens, texts, datas, nums, flags = settlement_columns(
            [settlements[i] for i in order])
        params = (kinds, ids, tokens, texts, datas, nums, flags,
                  None if queues is None else list(dict.fromkeys(queues)), worker_id,
                  float(now), float(lease_for), limit,
                  os.urandom(8).hex() + ".", self.work_channel, self.done_channel)
        rows = self._rows(self._sql["settle_and_claim"], params, binary=True)
        done = [False] * len(settlements)
        if rows:
            for i, ok in zip(order, rows[0][0], strict=True):
                done[i] = bool(ok)
        until = now + lease_for
        claimed = sorted(rows[1:], key=lambda r: (-r[5], r[1]))
        return done, [Delivery(r[2], r[3], bytes(r[4]), r[5], r[6], r[7], until)
                      for r in claimed]

    def extend(self, leases: Sequence[tuple[str, str]], now: float,
               lease_for: float) -> set[str]:
        if not leases:
            return set()
        rows = self._rows(self._sql["extend"], ([i for i, _ in leases], [t for _, t in leases],
                                                float(now + lease_for)))
        return {r[0] for r in rows}

    # --- waiting (LISTEN/NOTIFY; see notify.py) -------------------------------------------
    def _listener(self, channel: str, patience: float) -> Listener | None:
        """This process's listener on `channel`, started on first use (waiting up to
        `patience` seconds for its LISTEN); None while it is not listening (the server is
        away): callers poll then."""
        if self._pid != os.getpid():
            self._fresh_process()
        listener = self._listeners.get(channel)
        if listener is not None and listener.alive:
            return listener if listener.listening.is_set() else None
        with self._lock:
            listener = self._listeners.get(channel)
            if listener is None or not listener.alive:
                listener = Listener(lambda: connect(self.settings), channel)
                self._listeners[channel] = listener
        return listener if listener.wait_listening(patience) else None

    def wait_for_work(self, queues: Sequence[str] | None, timeout: float) -> None:
        """Sleep until an enqueue or release in `queues` is notified, a scheduled message or
        an expired lease comes due, or `timeout` (at most SAFETY_POLL) passes. Never raises:
        while the server is away this is a plain sleep, and the next claim reports it."""
        if timeout <= 0:
            return
        deadline = time.monotonic() + timeout
        try:
            self._wait_for_work(queues, timeout, deadline)
        except BackendUnavailable:
            time.sleep(max(0.0, min(deadline - time.monotonic(), SAFETY_POLL)))

    def _wait_for_work(self, queues: Sequence[str] | None, timeout: float,
                       deadline: float) -> None:
        listener = self._listener(self.work_channel, min(timeout, self.settings.timeout))
        if listener is None:
            time.sleep(max(0.0, min(deadline - time.monotonic(), SAFETY_POLL)))
            return
        interest = None if queues is None else set(queues)
        waiter: Waiter | None = getattr(self._local, "waiter", None)
        due = None
        if waiter is None or getattr(self._local, "listener", None) is not listener:
            # First wait of this thread (or a new listener): anything enqueued before we
            # listened was not heard, so look once.
            waiter = Waiter(interest)
            listener.add(waiter)
            self._local.waiter, self._local.listener = waiter, listener
            ready, due = self._next_due(queues)
            if ready:
                return
        else:
            waiter.interest = interest
            if timeout > 0.25:  # a long sleep must not oversleep a scheduled task
                ready, due = self._next_due(queues)
                if ready:
                    return
        limit = deadline - time.monotonic()
        if due is not None:
            limit = min(limit, due - time.time())
        waiter.event.wait(max(0.0, min(limit, SAFETY_POLL)))

    def _next_due(self, queues: Sequence[str] | None) -> tuple[bool, float | None]:
        """(anything ready in these queues?, the earliest time a scheduled message or a lease
        comes due)."""
        sql = self._sql["next_due"]
        if queues is None:
            sql = sql.replace("AND queue = ANY(%s::text[])", "")
        row = self._rows(sql, () if queues is None else (list(queues),))[0]
        times = [t for t in row[1:] if t is not None]
        return bool(row[0]), (min(times) if times else None)

    def wait(self, ids: Sequence[str], timeout: float | None, now_fn: Any = time.time,
             ) -> dict[str, StoredResult]:
        """Read the results; between reads, sleep until a settle of one of `ids` is notified
        (or SAFETY_POLL passes; while the listener is away, poll as the default does)."""
        if timeout is not None and timeout <= 0:
            return self.get_results(ids, now_fn())
        patience = self.settings.timeout if timeout is None else min(timeout,
                                                                     self.settings.timeout)
        listener = self._listener(self.done_channel, patience)
        if listener is None:
            return super().wait(ids, timeout, now_fn)
        deadline = None if timeout is None else time.monotonic() + timeout
        waiter = Waiter(set(ids))
        listener.add(waiter)
        try:
            while True:
                waiter.event.clear()  # a settle committed after this read wakes us
                found = self.get_results(ids, now_fn())
                if _finished(ids, found):
                    return found
                step = SAFETY_POLL if listener.listening.is_set() else 0.05
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return found
                    step = min(step, left)
                waiter.event.wait(step)
        finally:
            listener.remove(waiter)

    # --- results --------------------------------------------------------------------------
    def get_results(self, ids: Sequence[str], now: float) -> dict[str, StoredResult]:
        if not ids:
            return {}
        out: dict[str, StoredResult] = {}
        for (mid, state, ready_at, count, leased, died_at, r_state, r_data, r_updated,
             progress, progress_at) in self._rows(self._sql["results"], (now, list(ids), now),
                                                  binary=True):
            if state is not None and state != DEAD:
                if leased and progress is not None:
                    out[mid] = StoredResult(mid, PROGRESS, bytes(progress), progress_at)
                    continue
                out[mid] = StoredResult(mid, derived_state(ready_at, count, leased, now))
            elif r_state is not None:
                out[mid] = StoredResult(mid, r_state, None if r_data is None else bytes(r_data),
                                        r_updated)
            else:
                out[mid] = StoredResult(mid, FAILURE, None, died_at)
        return out

    # --- progress and revocation ----------------------------------------------------------
    def set_progress(self, id: str, token: str, data: bytes, now: float) -> bool:
        return bool(self._count(
            f"UPDATE {self._t('messages')} SET progress = %s, progress_token = token, "
            "progress_at = %s WHERE id = %s AND token = %s AND state <> 3",
            (data, now, id, token)))

    def revoke(self, ids: Sequence[str], now: float, terminate: bool, data: bytes,
               result_ttl: float) -> list[bool]:
        if not ids:
            return []
        found = self._run(lambda conn: control.revoke_in(
            conn, self.settings.quoted_schema, ids, now, terminate, data, result_ttl,
            self.done_channel))
        return control.outcomes(ids, found)

    def revoked(self, ids: Sequence[str]) -> dict[str, bool]:
        if not ids:
            return {}
        rows = self._rows(f"SELECT id, revoked FROM {self._t('messages')} WHERE "
                          "id = ANY(%s::text[]) AND state <> 3 AND revoked > 0", (list(ids),))
        return {r[0]: r[1] == 2 for r in rows}

    # --- coordination ---------------------------------------------------------------------
    def try_lock(self, key: str, owner: str, ttl: float, now: float) -> bool:
        return bool(self._rows(
            f"INSERT INTO {self._t('locks')} AS l (key, owner, expires_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, "
            "expires_at = excluded.expires_at WHERE l.owner = excluded.owner "
            "OR l.expires_at <= %s RETURNING 1", (key, owner, now + ttl, now)))

    def unlock(self, key: str, owner: str) -> bool:
        return bool(self._count(f"DELETE FROM {self._t('locks')} WHERE key = %s AND owner = %s",
                                (key, owner)))

    def _incr_sql(self) -> str:
        return (f"INSERT INTO {self._t('counters')} AS c (key, value, expires_at) "
                "VALUES (%s, %s, %s) ON CONFLICT (key) DO UPDATE SET "
                "value = CASE WHEN c.expires_at <= %s THEN excluded.value ELSE c.value + %s END, "
                "expires_at = CASE WHEN c.expires_at <= %s THEN excluded.expires_at "
                "ELSE c.expires_at END")

    def incr(self, key: str, by: int, ttl: float, now: float) -> int:
        rows = self._rows(self._incr_sql() + " RETURNING value",
                          (key, by, now + ttl, now, by, now))
        return int(rows[0][0])

    def incr_many(self, increments: Sequence[tuple[str, int, float]], now: float) -> None:
        if not increments:
            return
        # Sorted, so two workers flushing the same keys lock them in the same order.
        params = [(key, by, now + ttl, now, by, now) for key, by, ttl in sorted(increments)]

        def run(conn: Any) -> None:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(self._incr_sql(), params)
        self._run(run)

    def read_counters(self, keys: Sequence[str], now: float) -> dict[str, int]:
        if not keys:
            return {}
        rows = self._rows(f"SELECT key, value FROM {self._t('counters')} "
                          "WHERE key = ANY(%s) AND expires_at > %s", (list(keys), now))
        return {k: int(v) for k, v in rows}

    # --- administration -------------------------------------------------------------------
    def queue_stats(self, now: float) -> dict[str, QueueStats]:
        rows = self._rows(
            f"SELECT queue, "
            "count(*) FILTER (WHERE (token IS NULL AND ready_at <= %s) "
            "                    OR (token IS NOT NULL AND lease_until <= %s)), "
            "count(*) FILTER (WHERE token IS NULL AND ready_at > %s), "
            "count(*) FILTER (WHERE token IS NOT NULL AND lease_until > %s) "
            f"FROM {self._t('messages')} WHERE state <> 3 GROUP BY queue ORDER BY queue",
            (now, now, now, now))
        return {q: QueueStats(int(r), int(s), int(run)) for q, r, s, run in rows}

    def dead_letters(self, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        rows = self._rows(
            f"SELECT id, queue, body, reason, died_at, delivery_count FROM {self._t('messages')}"
            " WHERE state = 3 ORDER BY died_at, seq LIMIT %s OFFSET %s", (limit, offset),
            binary=True)
        return [DeadLetter(r[0], r[1], bytes(r[2]), r[3] or "", r[4], r[5]) for r in rows]

    def count_dead(self) -> int:
        return int(self._rows(f"SELECT count(*) FROM {self._t('messages')} WHERE state = 3")
                   [0][0])

    def list_messages(self, kind: str, queue: str | None, now: float, limit: int = 100,
                      offset: int = 0) -> list[MessageRecord]:
        """See Backend. Ready ones across every queue are sorted (the claim index is per
        queue); with a queue, and for the other kinds, an index is walked in order."""
        sql = {READY: queries.LIST_READY, SCHEDULED_KIND: queries.LIST_SCHEDULED,
               RUNNING: queries.LIST_RUNNING}[check_kind(kind)]
        limit, offset = max(0, limit), max(0, offset)
        rows = self._rows(
            sql.format(s=self.settings.quoted_schema, cols=queries.MESSAGE_COLUMNS,
                       queue="" if queue is None else "AND queue = %(queue)s"),
            {"now": now, "queue": queue, "limit": limit, "offset": offset,
             "n": limit + offset}, binary=True)
        return [_message_record(r, now) for r in rows]

    def list_results(self, state: str | None, now: float, limit: int = 100,
                     offset: int = 0) -> list[ResultRecord]:
        rows = self._rows(
            queries.LIST_RESULTS.format(s=self.settings.quoted_schema),
            {"now": now, "states": list(result_states(state)), "limit": max(0, limit),
             "offset": max(0, offset)}, binary=True)
        return [ResultRecord(r[0], r[1], None if r[2] is None else bytes(r[2]), r[3], r[4])
                for r in rows]

    def task_record(self, id: str, now: float) -> TaskRecord | None:
        cols = ", ".join("m." + c.strip() for c in queries.MESSAGE_COLUMNS.split(","))
        rows = self._rows(queries.TASK_RECORD.format(s=self.settings.quoted_schema, cols=cols),
                          {"id": id, "now": now}, binary=True)
        row = rows[0]
        msg = dead = result = None
        if row[0] is not None:
            msg = _message_record(row, now)
            if row[10] == DEAD:
                dead = DeadLetter(id, row[1], bytes(row[2]), row[11] or "", row[12], row[5])
        if row[13] is not None and (msg is None or dead is not None):
            result = ResultRecord(id, row[13], None if row[14] is None else bytes(row[14]),
                                  row[15], row[16])
        if msg is None and result is None:
            return None
        return TaskRecord(id, msg, dead, result)

    def retry_dead(self, ids: Sequence[str] | None, now: float) -> list[str]:
        messages = self._t("messages")

        def run(conn: Any) -> list[str]:
            with conn.transaction():
                if ids is None:
                    found = [r[0] for r in conn.execute(
                        f"SELECT id FROM {messages} WHERE state = 3 ORDER BY died_at, seq "
                        "FOR UPDATE")]
                else:
                    dead = {r[0] for r in conn.execute(
                        f"SELECT id FROM {messages} WHERE state = 3 AND id = ANY(%s::text[]) "
                        "FOR UPDATE", (list(ids),))}
                    found = list(dict.fromkeys(i for i in ids if i in dead))
                with conn.cursor() as cur:  # one at a time: each goes behind the previous
                    cur.executemany(
                        f"UPDATE {messages} SET state = 0, reason = NULL, died_at = NULL, "
                        "delivery_count = 0, ready_at = %s, dedup_key = NULL, revoked = 0, "
                        f"seq = nextval('{self.settings.quoted_schema}.conveyor_message_seq') "
                        "WHERE id = %s", [(now, i) for i in found])
                conn.execute(f"DELETE FROM {self._t('results')} WHERE id = ANY(%s::text[])",
                             (found,))
                if found:
                    conn.execute("SELECT pg_notify(%s, q) FROM (SELECT DISTINCT queue FROM "
                                 f"{messages} WHERE id = ANY(%s::text[])) AS x(q)",
                                 (self.work_channel, found))
                return found
        return self._run(run)

    def purge_dead(self, ids: Sequence[str] | None = None) -> int:
        return self._count(f"DELETE FROM {self._t('messages')} WHERE state = 3 "
                           "AND (%s::text[] IS NULL OR id = ANY(%s::text[]))",
                           (None if ids is None else list(ids),) * 2)

    def purge(self, queue: str | None, now: float) -> int:
        return int(self._rows(self._sql["purge"], (now, queue, queue, now))[0][0])

    def put_worker(self, worker: WorkerInfo, now: float, ttl: float) -> None:
        self._count(
            f"INSERT INTO {self._t('workers')} (id, info, last_seen, expires_at) "
            "VALUES (%s, %s::jsonb, %s, %s) ON CONFLICT (id) DO UPDATE SET info = excluded.info,"
            " last_seen = excluded.last_seen, expires_at = excluded.expires_at",
            (worker.id, json.dumps(worker.info), now, now + ttl))

    def remove_worker(self, worker_id: str) -> None:
        self._count(f"DELETE FROM {self._t('workers')} WHERE id = %s", (worker_id,))

    def workers(self, now: float) -> list[WorkerInfo]:
        rows = self._rows(f"SELECT id, info, last_seen FROM {self._t('workers')} "
                          "WHERE expires_at > %s ORDER BY id", (now,))
        return [WorkerInfo(r[0], r[1] if isinstance(r[1], dict) else json.loads(r[1]), r[2])
                for r in rows]

    def housekeeping(self, now: float) -> None:
        """Drop expired results, dedup keys, locks, counters and workers, in batches so no
        statement runs long or holds many locks."""
        batch = 5000
        for table, cond in (("results", "expires_at <= %s"),
                            ("dedup", "expires_at IS NOT NULL AND expires_at <= %s"),
                            ("locks", "expires_at <= %s"), ("counters", "expires_at <= %s"),
                            ("workers", "expires_at <= %s")):
            key = "id" if table in ("results", "workers") else "key"
            sql = (f"DELETE FROM {self._t(table)} WHERE {key} IN (SELECT {key} FROM "
                   f"{self._t(table)} WHERE {cond} LIMIT {batch} FOR UPDATE SKIP LOCKED)")
            while self._count(sql, (now,)) >= batch:
                pass

    def startup_warnings(self) -> list[str]:
        """Leases and delays use the clocks of the machines that call; say so when this one
        is far from the database server's."""
        try:
            server = float(self._rows("SELECT extract(epoch FROM clock_timestamp())")[0][0])
        except BackendUnavailable:
            return []
        skew = time.time() - server
        if abs(skew) > 2.0:
            return [f"this machine's clock is {skew:+.1f}s off the PostgreSQL server's; "
                    "leases and scheduled tasks use the clocks of the machines that call, so "
                    "keep them in sync (NTP)"]
        return []


def _finished(ids: Sequence[str], found: dict[str, StoredResult]) -> bool:
    return all(i in found and found[i].state in TERMINAL_STATES for i in ids)


def _is_async(connection: Any) -> bool:
    return psycopg is not None and isinstance(connection, psycopg.AsyncConnection)


def _message_record(row: Sequence[Any], now: float) -> MessageRecord:
    """A row of queries.MESSAGE_COLUMNS as a record; a lease counts only while it is live."""
    live = row[7] is not None and row[8] is not None and row[8] > now
    return MessageRecord(row[0], row[1], bytes(row[2]), row[3], row[4], row[5], row[6],
                         row[8] if live else None, row[9] if live else None)
