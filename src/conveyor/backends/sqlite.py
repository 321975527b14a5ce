"""sqlite:/// — the embedded default: one file, many producer and worker processes.

Safety on one file comes from WAL mode (readers never block the writer), a busy timeout plus a
retry loop around every write (so "database is locked" never reaches a user), and claims done
as one `UPDATE ... RETURNING` statement inside `BEGIN IMMEDIATE`. `synchronous=NORMAL` (the
default) keeps every committed transaction across a process crash; `?synchronous=FULL` in the
URL also keeps it across a power cut.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import BackendUnavailable, ConfigError
from .base import (
    FAILURE,
    PROGRESS,
    READY,
    RUNNING,
    SCHEDULED_KIND,
    Ack,
    Backend,
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
from .sqlite_control import add_columns, revoke_in
from .sqlite_fs import network_filesystem
from .wake import RESULTS, WORKERS, WakeChannel, channel_directory, wait_readable

T = TypeVar("T")
SCHEMA_VERSION = 2
AUTOCHECKPOINT_PAGES = 10_000  # about 40 MB of WAL before a commit checkpoints by itself
WAL_SIZE_LIMIT = 64 * 1024 * 1024  # bytes the WAL file is truncated to after a checkpoint
WAL_RESTART_AT = 8 * 1024 * 1024  # past this, the worker's checkpoint starts the log over
RESTART_WAIT_MS = 200  # how long that checkpoint may wait for readers (writers wait too)
CHECKPOINT_BUSY_EVERY = 0.05  # seconds between checkpoints while the log grows
_SYNC_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")

SCHEMA = """
CREATE TABLE IF NOT EXISTS conveyor_messages (
    seq INTEGER PRIMARY KEY,  -- FIFO order; max+1, so never behind a live row
    id TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    ready_at REAL NOT NULL,
    avail_at REAL NOT NULL,
    body BLOB NOT NULL,
    delivery_count INTEGER NOT NULL DEFAULT 0,
    token TEXT,
    lease_until REAL,
    worker TEXT,
    dead INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    died_at REAL,
    dedup_key TEXT,
    dedup_retention REAL NOT NULL DEFAULT 0,
    enqueued_at REAL NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,  -- 1 revoked while running, 2 to be stopped
    progress BLOB,  -- the latest progress of the run holding progress_token
    progress_token TEXT,
    progress_at REAL
);
CREATE INDEX IF NOT EXISTS conveyor_messages_claim
    ON conveyor_messages (queue, priority DESC, seq) WHERE dead = 0;
CREATE INDEX IF NOT EXISTS conveyor_messages_dead
    ON conveyor_messages (died_at) WHERE dead = 1;
CREATE TABLE IF NOT EXISTS conveyor_results (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    data BLOB,
    updated_at REAL NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS conveyor_dedup (
    key TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,
    expires_at REAL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS conveyor_locks (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS conveyor_counters (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS conveyor_workers (
    id TEXT PRIMARY KEY,
    info TEXT NOT NULL,
    last_seen REAL NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
"""

_INSERT = ("INSERT INTO conveyor_messages (id, queue, priority, ready_at, avail_at, body, "
           "dedup_key, dedup_retention, enqueued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
           "ON CONFLICT (id) DO NOTHING")


# list_messages: kind -> (condition on `now`, order); a live lease is running, whatever else
# waits is ready or scheduled by its ready_at (as queue_stats counts them).
_KIND_SQL = {
    READY: ("NOT (token IS NOT NULL AND lease_until > ?1) AND ready_at <= ?1",
            "priority DESC, seq"),
    SCHEDULED_KIND: ("NOT (token IS NOT NULL AND lease_until > ?1) AND ready_at > ?1",
                     "ready_at, seq"),
    RUNNING: ("token IS NOT NULL AND lease_until > ?1", "lease_until, seq"),
}
_RECORD_COLUMNS = ("id, queue, body, priority, ready_at, delivery_count, enqueued_at, token, "
                   "lease_until, worker")


def _message_record(row: Sequence[Any], now: float) -> MessageRecord:
    live = row[7] is not None and row[8] is not None and row[8] > now
    return MessageRecord(row[0], row[1], bytes(row[2]), row[3], row[4], row[5], row[6],
                         row[8] if live else None, row[9] if live else None)


# A counter: created at `by`, or added to; one whose window ran out starts again.
_INCR = ("INSERT INTO conveyor_counters (key, value, expires_at) VALUES (?, ?, ?) "
         "ON CONFLICT (key) DO UPDATE SET "
         "value = CASE WHEN expires_at <= ? THEN excluded.value ELSE value + ? END, "
         "expires_at = CASE WHEN expires_at <= ? THEN excluded.expires_at ELSE expires_at END")


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def parse_sqlite_url(url: str) -> tuple[str, dict[str, str]]:
    """`sqlite:///relative.db`, `sqlite:////absolute.db` -> (path, options)."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ConfigError(f"bad SQLite URL {url!r}: use sqlite:///relative/path.db or "
                          "sqlite:////absolute/path.db (three slashes, then the path)")
    path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
    if not path or path == ":memory:":
        raise ConfigError(f"bad SQLite URL {url!r}: it names no file (an in-memory SQLite "
                          "database is not shared between processes; use memory:// for tests)")
    options = {k.lower(): v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(options) - {"synchronous", "busy_timeout", "network_fs"}
    if unknown:
        raise ConfigError(f"bad SQLite URL {url!r}: unknown option(s) {', '.join(sorted(unknown))}"
                          " (known: synchronous, busy_timeout, network_fs)")
    sync = options.get("synchronous", "NORMAL").upper()
    if sync not in _SYNC_MODES:
        raise ConfigError(f"bad SQLite URL {url!r}: synchronous must be one of {_SYNC_MODES}")
    options["synchronous"] = sync
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ConfigError(f"bad SQLite URL {url!r}: directory {directory!r} does not exist")
    allow = options.get("network_fs", "refuse").lower()
    if allow not in ("refuse", "allow"):
        raise ConfigError(f"bad SQLite URL {url!r}: network_fs must be 'refuse' or 'allow'")
    fstype = network_filesystem(directory)
    if fstype is not None and allow != "allow":
        raise ConfigError(
            f"bad SQLite URL {url!r}: {directory!r} is on a network file system ({fstype}), "
            "where SQLite's locks do not hold and the queue can be corrupted; put the file on "
            "a local disk, use redis:// or postgresql:// to share a queue between machines, or "
            "add ?network_fs=allow if you are sure only one machine uses it")
    return path, options


class SqliteBackend(Backend):
    def __init__(self, url: str = "sqlite:///conveyor.db") -> None:
        self.url = url
        self.path, options = parse_sqlite_url(url)
        self.synchronous = options["synchronous"]
        self.busy_timeout = float(options.get("busy_timeout", "60"))
        self._local = threading.local()
        self._schema_lock = threading.Lock()
        self._schema_ready_pid = 0
        self._wake = WakeChannel(channel_directory(self.path))
        self._log_busy_until = 0.0  # checkpoint(): until then, the WAL grows fast

    # --- connections ----------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        pid = os.getpid()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", 0) == pid:
            return conn
        conn = self._connect()
        self._local.conn, self._local.pid = conn, pid
        return conn

    def _connect(self) -> sqlite3.Connection:
        try:
            # No SQLite busy handler: it sleeps a millisecond or more per try, far longer than
            # a conveyor write holds the lock. `_retrying` waits in short, growing steps.
            conn = sqlite3.connect(self.path, timeout=0, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"cannot open SQLite database {self.path!r} ({self.url}): "
                                     f"{exc}") from None
        try:
            self._retrying(lambda: self._ensure_schema(conn))
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise ConfigError(f"{self.path!r} ({self.url}) is not a usable SQLite database: "
                              f"{exc}") from None
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        # Checkpoints are the worker supervisor's job (`checkpoint`, about twice a second), so
        # producers' and children's commits rarely pay for one; this is only the safety net.
        conn.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        return conn

    def checkpoint(self) -> float | None:
        """Copy the write-ahead log into the database without blocking anyone (PASSIVE).

        Under a steady stream of readers and writers a passive checkpoint never finds the
        moment to start the log over, and the WAL file grows for as long as the load lasts.
        Past WAL_RESTART_AT bytes this takes the checkpoint lock (retrying while another
        process's automatic checkpoint holds it), waits up to RESTART_WAIT_MS for the writers
        and the readers of old frames (writers retry meanwhile), and truncates the log. While
        the log grows, it asks to be called again soon (every CHECKPOINT_BUSY_EVERY)."""
        conn = self._conn()
        size = _file_size(self.path + "-wal")
        try:
            if size < WAL_RESTART_AT:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            else:
                self._restart_log(conn)
        except sqlite3.OperationalError as exc:  # busy: the next call catches up
            if "locked" not in str(exc).lower() and "busy" not in str(exc).lower():
                raise
        now = time.monotonic()
        if size >= WAL_RESTART_AT // 4:
            self._log_busy_until = now + 1.0  # growing fast: keep watching for a while
        return CHECKPOINT_BUSY_EVERY if now < self._log_busy_until else None

    def _restart_log(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA busy_timeout = {RESTART_WAIT_MS}")
        try:
            deadline = time.monotonic() + RESTART_WAIT_MS / 1000
            while conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
                if time.monotonic() > deadline:  # still busy: the next call tries again
                    return
                time.sleep(0.002)
        finally:
            conn.execute("PRAGMA busy_timeout = 0")

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        with self._schema_lock:
            if self._schema_ready_pid == os.getpid():
                return
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version < SCHEMA_VERSION:
                # CREATE ... IF NOT EXISTS makes a race between two processes harmless.
                try:
                    conn.executescript("BEGIN IMMEDIATE;" + SCHEMA + "COMMIT;")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                if version >= 1:  # an older file: add the newer columns
                    add_columns(conn)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version > SCHEMA_VERSION:
                raise ConfigError(f"SQLite database {self.path!r} has schema version {version}, "
                                  f"newer than this conveyor understands ({SCHEMA_VERSION})")
            self._schema_ready_pid = os.getpid()

    def _retrying(self, fn: Callable[[], T]) -> T:
        """Run `fn`, retrying while SQLite says the database is busy or locked."""
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.00005
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                text = str(exc).lower()
                if "locked" not in text and "busy" not in text:
                    raise
                if time.monotonic() > deadline:
                    raise BackendUnavailable(f"SQLite database {self.path!r} stayed locked for "
                                             f"{self.busy_timeout:.0f}s: {exc}") from None
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 1.5, 0.005)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            with self._tx() as conn:
                return fn(conn)
        return self._retrying(run)

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self._retrying(lambda: fn(self._conn()))

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", 0) == os.getpid():
            conn.close()
        self._local = threading.local()

    # --- producer -------------------------------------------------------------------------
    def enqueue(self, messages: Sequence[Message], now: float) -> list[str]:
        rows = [(m.id, m.queue, m.priority, m.ready_at, m.ready_at, m.body, m.dedup_key,
                 m.dedup_retention, now) for m in messages]
        if not any(m.dedup_key for m in messages):
            if len(rows) == 1:  # one statement is its own transaction: the fast path
                self._retrying(lambda: self._conn().execute(_INSERT, rows[0]))
            else:
                self._write(lambda c: c.executemany(_INSERT, rows))
            self._wake.notify(WORKERS)
            return [m.id for m in messages]
        ids = self._write(lambda c: [self._enqueue_one(c, m, r, now)
                                     for m, r in zip(messages, rows, strict=True)])
        self._wake.notify(WORKERS)
        return ids

    @staticmethod
    def _enqueue_one(conn: sqlite3.Connection, m: Message, row: tuple[Any, ...],
                     now: float) -> str:
        if m.dedup_key is not None:
            held = conn.execute("SELECT message_id, expires_at FROM conveyor_dedup WHERE key = ?",
                                (m.dedup_key,)).fetchone()
            if held is not None and (held[1] is None or held[1] > now):
                return str(held[0])
        if conn.execute(_INSERT, row).rowcount == 0:
            return m.id  # that id is already queued
        if m.dedup_key is not None:
            conn.execute("INSERT OR REPLACE INTO conveyor_dedup (key, message_id, expires_at) "
                         "VALUES (?, ?, NULL)", (m.dedup_key, m.id))
        return m.id

    # --- consumer -------------------------------------------------------------------------
    def claim(self, queues: Sequence[str] | None, worker_id: str, now: float, lease_for: float,
              limit: int) -> list[Delivery]:
        if queues is not None and not queues:
            return []
        if not self._any_ready(queues, now):  # an idle poll must not take the write lock
            return []
        return self._write(lambda c: self._claim(c, queues, worker_id, now, lease_for, limit))

    def settle_and_claim(self, settlements: Sequence[Settlement], queues: Sequence[str] | None,
                         worker_id: str, now: float, lease_for: float, limit: int,
                         ) -> tuple[list[bool], list[Delivery]]:
        if not settlements:
            return [], self.claim(queues, worker_id, now, lease_for, limit)

        def run(conn: sqlite3.Connection) -> tuple[list[bool], list[Delivery]]:
            done = [self._settle_one(conn, s, now) for s in settlements]
            if queues is not None and not queues:
                return done, []
            return done, self._claim(conn, queues, worker_id, now, lease_for, limit)
        out = self._write(run)
        self._announce(settlements, now)
        return out

    def _any_ready(self, queues: Sequence[str] | None, now: float) -> bool:
        """A cheap read: is anything claimable in these queues?"""
        where, params = self._claimable(queues, now)
        probe = f"SELECT 1 FROM conveyor_messages WHERE {where} LIMIT 1"
        return self._read(lambda c: c.execute(probe, params).fetchone()) is not None

    @staticmethod
    def _claimable(queues: Sequence[str] | None, now: float) -> tuple[str, list[Any]]:
        where = "dead = 0 AND avail_at <= ?"
        params: list[Any] = [now]
        if queues is not None:
            where += f" AND queue IN ({','.join('?' * len(queues))})"
            params.extend(queues)
        return where, params

    def _claim(self, conn: sqlite3.Connection, queues: Sequence[str] | None, worker_id: str,
               now: float, lease_for: float, limit: int) -> list[Delivery]:
        """One UPDATE ... RETURNING takes the batch; each row gets a token of its own."""
        where, params = self._claimable(queues, now)
        token = os.urandom(8).hex() + "."
        until = now + lease_for
        sql = (f"UPDATE conveyor_messages SET token = ? || seq, lease_until = ?, avail_at = ?, "
               f"delivery_count = delivery_count + 1, worker = ? WHERE seq IN ("
               f"SELECT seq FROM conveyor_messages WHERE {where} "
               f"ORDER BY priority DESC, seq LIMIT ?) "
               f"RETURNING seq, id, queue, body, priority, delivery_count, token")
        rows = conn.execute(sql, [token, until, until, worker_id, *params, limit]).fetchall()
        rows.sort(key=lambda r: (-r[4], r[0]))
        return [Delivery(r[1], r[2], bytes(r[3]), r[4], r[5], r[6], until) for r in rows]

    def extend(self, leases: Sequence[tuple[str, str]], now: float,
               lease_for: float) -> set[str]:
        if not leases:
            return set()
        until = now + lease_for

        def run(conn: sqlite3.Connection) -> set[str]:
            held = set()
            for mid, token in leases:
                cur = conn.execute("UPDATE conveyor_messages SET lease_until = ?, avail_at = ? "
                                   "WHERE id = ? AND token = ? AND dead = 0",
                                   (until, until, mid, token))
                if cur.rowcount:
                    held.add(token)
            return held
        return self._write(run)

    def settle(self, settlements: Sequence[Settlement], now: float) -> list[bool]:
        done = self._write(lambda c: [self._settle_one(c, s, now) for s in settlements])
        self._announce(settlements, now)
        return done

    def _announce(self, settlements: Sequence[Settlement], now: float) -> None:
        """Wake who may care: waiting get()s when results were stored, idle workers when
        messages came back ready (a give-back)."""
        if any(not isinstance(s, Release) for s in settlements):
            self._wake.notify(RESULTS)
        if any(isinstance(s, Release) and s.ready_at <= now for s in settlements):
            self._wake.notify(WORKERS)

    # --- waiting (local wake-ups; see wake.py) --------------------------------------------
    def wait_for_work(self, queues: Sequence[str] | None, timeout: float) -> None:
        with self._wake.listening(WORKERS) as sock:
            if sock is None:
                super().wait_for_work(queues, timeout)
                return
            # Something enqueued just before we listened did not wake us: look once.
            if not self._any_ready(queues, time.time()):
                wait_readable(sock, timeout)

    def wait(self, ids: Sequence[str], timeout: float | None, now_fn: Any = time.time,
             ) -> dict[str, StoredResult]:
        """Poll the results, sleeping between polls on the wake-up socket: a stored result
        wakes us at once, and the poll (at most every 50 ms) is only the safety net."""
        with self._wake.listening(RESULTS) as sock:
            if sock is None:
                return super().wait(ids, timeout, now_fn)
            return self.poll_results(ids, timeout, now_fn,
                                     lambda seconds: wait_readable(sock, seconds), 0.01)

    def _settle_one(self, conn: sqlite3.Connection, s: Settlement, now: float) -> bool:
        if isinstance(s, Ack):
            row = conn.execute("DELETE FROM conveyor_messages WHERE id = ? AND token = ? "
                               "AND dead = 0 RETURNING dedup_key, dedup_retention",
                               (s.id, s.token)).fetchone()
            if row is None:
                return False
            if s.data is not None:
                conn.execute("INSERT OR REPLACE INTO conveyor_results VALUES (?, ?, ?, ?, ?)",
                             (s.id, s.state, s.data, now, now + s.result_ttl))
            else:  # a result of an earlier run of this id is not this run's
                conn.execute("DELETE FROM conveyor_results WHERE id = ?", (s.id,))
            self._release_key(conn, s.id, row[0], row[1], now)
            return True
        if isinstance(s, Release):
            cur = conn.execute(
                "UPDATE conveyor_messages SET token = NULL, lease_until = NULL, worker = NULL, "
                "ready_at = ?, avail_at = ?, body = coalesce(?, body), "
                "delivery_count = max(0, delivery_count - ?) "
                "WHERE id = ? AND token = ? AND dead = 0",
                (s.ready_at, s.ready_at, s.body, 0 if s.attempted else 1, s.id, s.token))
            if cur.rowcount and s.attempted:  # a retry goes behind what is already queued
                conn.execute("UPDATE conveyor_messages SET seq = (SELECT max(seq) + 1 FROM "
                             "conveyor_messages) WHERE id = ?", (s.id,))
            return bool(cur.rowcount)
        row = conn.execute(
            "UPDATE conveyor_messages SET token = NULL, lease_until = NULL, dead = 1, "
            "reason = ?, died_at = ? WHERE id = ? AND token = ? AND dead = 0 "
            "RETURNING dedup_key, dedup_retention", (s.reason, now, s.id, s.token)).fetchone()
        if row is None:
            return False
        conn.execute("INSERT OR REPLACE INTO conveyor_results VALUES (?, ?, ?, ?, ?)",
                     (s.id, FAILURE, s.data, now, now + s.result_ttl))
        self._release_key(conn, s.id, row[0], row[1], now)
        return True

    @staticmethod
    def _release_key(conn: sqlite3.Connection, mid: str, key: str | None, retention: float,
                     now: float) -> None:
        if key is None:
            return
        if retention > 0:
            conn.execute("UPDATE conveyor_dedup SET expires_at = ? WHERE key = ? AND "
                         "message_id = ?", (now + retention, key, mid))
        else:
            conn.execute("DELETE FROM conveyor_dedup WHERE key = ? AND message_id = ?",
                         (key, mid))

    # --- results --------------------------------------------------------------------------
    def get_results(self, ids: Sequence[str], now: float) -> dict[str, StoredResult]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))

        def run(conn: sqlite3.Connection) -> dict[str, StoredResult]:
            out: dict[str, StoredResult] = {}
            for mid, ready_at, dc, token, lease_until, died_at, pdata, ptoken, pat in (
                    conn.execute(f"SELECT id, ready_at, delivery_count, token, lease_until, "
                                 f"died_at, progress, progress_token, progress_at FROM "
                                 f"conveyor_messages WHERE id IN ({marks})", list(ids))):
                if died_at is None:
                    leased = token is not None and lease_until > now
                    if leased and pdata is not None and ptoken == token:
                        out[mid] = StoredResult(mid, PROGRESS, bytes(pdata), pat)
                        continue
                    out[mid] = StoredResult(mid, derived_state(ready_at, dc, leased, now))
                else:
                    out[mid] = StoredResult(mid, FAILURE, None, died_at)
            missing = [i for i in ids if i not in out or out[i].state == FAILURE]
            if missing:
                for mid, state, data, updated in conn.execute(
                        f"SELECT id, state, data, updated_at FROM conveyor_results WHERE id IN "
                        f"({','.join('?' * len(missing))}) AND expires_at > ?", [*missing, now]):
                    out[mid] = StoredResult(mid, state, None if data is None else bytes(data),
                                            updated)
            return out
        return self._read(run)

    # --- progress and revocation ----------------------------------------------------------
    def set_progress(self, id: str, token: str, data: bytes, now: float) -> bool:
        return bool(self._retrying(lambda: self._conn().execute(
            "UPDATE conveyor_messages SET progress = ?, progress_token = token, progress_at = ? "
            "WHERE id = ? AND token = ? AND dead = 0", (data, now, id, token)).rowcount))

    def revoke(self, ids: Sequence[str], now: float, terminate: bool, data: bytes,
               result_ttl: float) -> list[bool]:
        if not ids:
            return []
        out, dropped = self._write(lambda c: revoke_in(c, ids, now, terminate, data,
                                                       result_ttl, self._release_key))
        if dropped:
            self._wake.notify(RESULTS)
        return out

    def revoked(self, ids: Sequence[str]) -> dict[str, bool]:
        if not ids:
            return {}
        rows = self._read(lambda c: c.execute(
            f"SELECT id, revoked FROM conveyor_messages WHERE id IN "
            f"({','.join('?' * len(ids))}) AND dead = 0 AND revoked > 0", list(ids)).fetchall())
        return {r[0]: r[1] == 2 for r in rows}

    # --- coordination ---------------------------------------------------------------------
    def try_lock(self, key: str, owner: str, ttl: float, now: float) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "INSERT INTO conveyor_locks (key, owner, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, "
                "expires_at = excluded.expires_at WHERE conveyor_locks.owner = excluded.owner "
                "OR conveyor_locks.expires_at <= ?", (key, owner, now + ttl, now))
            return bool(cur.rowcount)
        return self._write(run)

    def unlock(self, key: str, owner: str) -> bool:
        return self._write(lambda c: bool(c.execute(
            "DELETE FROM conveyor_locks WHERE key = ? AND owner = ?", (key, owner)).rowcount))

    def incr(self, key: str, by: int, ttl: float, now: float) -> int:
        def run(conn: sqlite3.Connection) -> int:
            row = conn.execute(_INCR + " RETURNING value",
                               (key, by, now + ttl, now, by, now)).fetchone()
            return int(row[0])
        return self._write(run)

    def incr_many(self, increments: Sequence[tuple[str, int, float]], now: float) -> None:
        if not increments:
            return

        def run(conn: sqlite3.Connection) -> None:  # one transaction (_write)
            conn.executemany(_INCR, [(key, by, now + ttl, now, by, now)
                                     for key, by, ttl in increments])
        self._write(run)

    def read_counters(self, keys: Sequence[str], now: float) -> dict[str, int]:
        unique = list(dict.fromkeys(keys))

        def run(conn: sqlite3.Connection) -> dict[str, int]:
            out: dict[str, int] = {}
            for i in range(0, len(unique), 500):  # well under SQLite's limit on parameters
                chunk = unique[i:i + 500]
                out.update(conn.execute(
                    "SELECT key, value FROM conveyor_counters WHERE expires_at > ? AND key IN "
                    f"({','.join('?' * len(chunk))})", [now, *chunk]).fetchall())
            return out
        return self._read(run)

    # --- administration -------------------------------------------------------------------
    def queue_stats(self, now: float) -> dict[str, QueueStats]:
        rows = self._read(lambda c: c.execute(
            "SELECT queue, "
            "sum(token IS NULL AND ready_at <= ?), "
            "sum(token IS NULL AND ready_at > ?), "
            "sum(token IS NOT NULL AND lease_until > ?), "
            "sum(token IS NOT NULL AND lease_until <= ?) "
            "FROM conveyor_messages WHERE dead = 0 GROUP BY queue ORDER BY queue",
            (now, now, now, now)).fetchall())
        return {q: QueueStats(int(r or 0) + int(lost or 0), int(s or 0), int(run or 0))
                for q, r, s, run, lost in rows}

    def dead_letters(self, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        rows = self._read(lambda c: c.execute(
            "SELECT id, queue, body, reason, died_at, delivery_count FROM conveyor_messages "
            "WHERE dead = 1 ORDER BY died_at, seq LIMIT ? OFFSET ?", (limit, offset)).fetchall())
        return [DeadLetter(r[0], r[1], bytes(r[2]), r[3] or "", r[4], r[5]) for r in rows]

    def count_dead(self) -> int:
        row = self._read(lambda c: c.execute(
            "SELECT count(*) FROM conveyor_messages WHERE dead = 1").fetchone())
        return int(row[0])

    def list_messages(self, kind: str, queue: str | None, now: float, limit: int = 100,
                      offset: int = 0) -> list[MessageRecord]:
        where, order = _KIND_SQL[check_kind(kind)]
        rows = self._read(lambda c: c.execute(
            f"SELECT {_RECORD_COLUMNS} FROM conveyor_messages WHERE dead = 0 AND {where} "
            "AND (? IS NULL OR queue = ?) "
            f"ORDER BY {order} LIMIT ? OFFSET ?",
            (now, queue, queue, max(0, limit), max(0, offset))).fetchall())
        return [_message_record(r, now) for r in rows]

    def list_results(self, state: str | None, now: float, limit: int = 100,
                     offset: int = 0) -> list[ResultRecord]:
        states = result_states(state)
        rows = self._read(lambda c: c.execute(
            "SELECT id, state, data, updated_at, expires_at FROM conveyor_results r "
            f"WHERE expires_at > ? AND state IN ({','.join('?' * len(states))}) "
            "AND NOT EXISTS (SELECT 1 FROM conveyor_messages m WHERE m.id = r.id) "
            "ORDER BY expires_at DESC, id DESC LIMIT ? OFFSET ?",
            (now, *states, max(0, limit), max(0, offset))).fetchall())
        return [ResultRecord(r[0], r[1], None if r[2] is None else bytes(r[2]), r[3], r[4])
                for r in rows]

    def task_record(self, id: str, now: float) -> TaskRecord | None:
        def run(conn: sqlite3.Connection) -> TaskRecord | None:
            row = conn.execute(f"SELECT {_RECORD_COLUMNS}, dead, reason, died_at FROM "
                               "conveyor_messages WHERE id = ?", (id,)).fetchone()
            res = conn.execute("SELECT id, state, data, updated_at, expires_at FROM "
                               "conveyor_results WHERE id = ? AND expires_at > ?",
                               (id, now)).fetchone()
            msg = None if row is None else _message_record(row, now)
            dead = None
            if row is not None and row[10]:
                dead = DeadLetter(id, row[1], bytes(row[2]), row[11] or "", row[12], row[5])
            result = None
            if res is not None and (row is None or dead is not None):
                result = ResultRecord(id, res[1], None if res[2] is None else bytes(res[2]),
                                      res[3], res[4])
            if msg is None and result is None:
                return None
            return TaskRecord(id, msg, dead, result)
        return self._read(run)

    def retry_dead(self, ids: Sequence[str] | None, now: float) -> list[str]:
        def run(conn: sqlite3.Connection) -> list[str]:
            if ids is None:
                found = [r[0] for r in conn.execute(
                    "SELECT id FROM conveyor_messages WHERE dead = 1 ORDER BY died_at, seq")]
            else:
                found = [i for i in ids if conn.execute(
                    "SELECT 1 FROM conveyor_messages WHERE id = ? AND dead = 1", (i,)).fetchone()]
            for i in found:
                conn.execute(
                    "UPDATE conveyor_messages SET dead = 0, reason = NULL, died_at = NULL, "
                    "delivery_count = 0, ready_at = ?, avail_at = ?, dedup_key = NULL, "
                    "revoked = 0, seq = (SELECT max(seq) + 1 FROM conveyor_messages) "
                    "WHERE id = ?",
                    (now, now, i))
                conn.execute("DELETE FROM conveyor_results WHERE id = ?", (i,))
            return found
        return self._write(run)

    def purge_dead(self, ids: Sequence[str] | None = None) -> int:
        if ids is None:
            return self._write(lambda c: c.execute(
                "DELETE FROM conveyor_messages WHERE dead = 1").rowcount)
        return self._write(lambda c: sum(c.execute(
            "DELETE FROM conveyor_messages WHERE dead = 1 AND id = ?", (i,)).rowcount
            for i in ids))

    def purge(self, queue: str | None, now: float) -> int:
        # A message whose lease ran out is waiting again (queue_stats counts it as ready).
        cond = "dead = 0 AND (token IS NULL OR lease_until <= ?)" + (
            "" if queue is None else " AND queue = ?")
        params: tuple[Any, ...] = (now,) if queue is None else (now, queue)

        def run(conn: sqlite3.Connection) -> int:
            keys = conn.execute(f"SELECT id, dedup_key, dedup_retention FROM conveyor_messages "
                                f"WHERE {cond} AND dedup_key IS NOT NULL", params).fetchall()
            for mid, key, retention in keys:
                self._release_key(conn, mid, key, retention, now)
            return conn.execute(f"DELETE FROM conveyor_messages WHERE {cond}", params).rowcount
        return self._write(run)

    def put_worker(self, worker: WorkerInfo, now: float, ttl: float) -> None:
        self._write(lambda c: c.execute(
            "INSERT OR REPLACE INTO conveyor_workers VALUES (?, ?, ?, ?)",
            (worker.id, json.dumps(worker.info), now, now + ttl)))

    def remove_worker(self, worker_id: str) -> None:
        self._write(lambda c: c.execute("DELETE FROM conveyor_workers WHERE id = ?",
                                        (worker_id,)))

    def workers(self, now: float) -> list[WorkerInfo]:
        rows = self._read(lambda c: c.execute(
            "SELECT id, info, last_seen FROM conveyor_workers WHERE expires_at > ? ORDER BY id",
            (now,)).fetchall())
        return [WorkerInfo(r[0], json.loads(r[1]), r[2]) for r in rows]

    def housekeeping(self, now: float) -> None:
        def run(conn: sqlite3.Connection) -> None:
            for table in ("conveyor_results", "conveyor_locks", "conveyor_counters",
                          "conveyor_workers"):
                conn.execute(f"DELETE FROM {table} WHERE expires_at <= ?", (now,))
            conn.execute("DELETE FROM conveyor_dedup WHERE expires_at IS NOT NULL AND "
                         "expires_at <= ?", (now,))
        self._write(run)
