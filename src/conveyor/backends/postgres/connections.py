"""The URL, connection settings and a small per-process connection pool for PostgreSQL.

Why not `psycopg_pool.ConnectionPool`: it connects in background threads and retries with a
growing back-off, so a caller waiting for a connection learns nothing but "timed out" after the
whole budget, and after an outage the next connection may come seconds after the server is
back. Conveyor needs the opposite: a producer that fails at once with the real cause when the
server is down, and just works on its next call once the server is up. This pool connects in
the calling thread, hands out idle connections last-in first-out (so a spare one is rarely
used and a busy process reuses warm, prepared connections), and throws away any idle
connection whose socket turned readable (the server closed it, e.g. on a restart): one
non-blocking poll, no round trip.
"""

from __future__ import annotations

import math
import os
import re
import select
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ...errors import BackendUnavailable, ConfigError
from ..base import redact

try:
    import psycopg
    from psycopg import pq
except ImportError:  # pragma: no cover - reported by PostgresBackend.__init__
    psycopg = None  # type: ignore[assignment]
    pq = None  # type: ignore[assignment]

DEFAULT_SCHEMA = "public"
DEFAULT_TIMEOUT = 5.0
DEFAULT_POOL = 8
OUR_OPTIONS = ("schema", "timeout", "pool")
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def require_psycopg() -> None:
    if psycopg is None:
        raise ConfigError("postgresql:// needs psycopg 3 (psycopg[binary] >= 3.2): "
                          "pip install conveyor[postgres]")


@dataclass(frozen=True, slots=True)
class Settings:
    """What a postgresql:// URL says: the libpq part and conveyor's own options."""

    url: str  # as given (show it with redact())
    conninfo: str  # the URL handed to libpq, without conveyor's options
    schema: str
    timeout: float  # connect timeout and statement/lock budget, seconds
    pool_size: int
    connect_kwargs: dict[str, Any]

    @property
    def quoted_schema(self) -> str:
        return f'"{self.schema}"'


def parse_postgres_url(url: str) -> Settings:
    """`postgresql://user:pw@host:port/db?schema=s&timeout=5&pool=8&<libpq options>`."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("postgresql", "postgres"):
        raise ConfigError(f"not a PostgreSQL URL: {redact(url)!r}")
    ours: dict[str, str] = {}
    theirs: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key.lower() in OUR_OPTIONS:
            ours[key.lower()] = value
        else:
            theirs.append((key, value))
    schema = ours.get("schema") or DEFAULT_SCHEMA
    if not _SCHEMA_NAME.match(schema):
        raise ConfigError(f"bad PostgreSQL URL {redact(url)!r}: schema={schema!r} must be a "
                          "plain identifier (letters, digits, _; at most 63 characters)")
    try:
        timeout = float(ours.get("timeout", DEFAULT_TIMEOUT))
        pool_size = int(ours.get("pool", DEFAULT_POOL))
    except ValueError:
        raise ConfigError(f"bad PostgreSQL URL {redact(url)!r}: timeout= takes seconds and "
                          "pool= a number of connections") from None
    if not (timeout > 0 and math.isfinite(timeout)) or pool_size < 1:
        raise ConfigError(f"bad PostgreSQL URL {redact(url)!r}: timeout= must be above 0 and "
                          "pool= at least 1")
    conninfo = urlunsplit(parts._replace(query=urlencode(theirs)))
    given = {k.lower(): v for k, v in theirs}
    millis = int(timeout * 1000)
    kwargs: dict[str, Any] = {
        # a budget for every statement and lock wait: nothing hangs on a stuck server
        "options": " ".join(filter(None, [given.get("options", ""),
                                          f"-c statement_timeout={millis}",
                                          f"-c lock_timeout={millis}",
                                          # claims rely on READ COMMITTED + SKIP LOCKED
                                          r"-c default_transaction_isolation=read\ committed"
                                          ])),
    }
    defaults = {
        "connect_timeout": str(max(1, math.ceil(timeout))),
        "application_name": "conveyor",
        "tcp_user_timeout": str(millis),  # unacknowledged writes to a vanished server
        "keepalives_idle": str(max(1, math.ceil(timeout))),
        "keepalives_interval": "1",
        "keepalives_count": "3",
    }
    for key, value in defaults.items():
        if key not in given:
            kwargs[key] = value
    return Settings(url, conninfo, schema, timeout, pool_size, kwargs)


def unavailable(settings: Settings, exc: BaseException, doing: str = "") -> BackendUnavailable:
    """A BackendUnavailable naming the URL (password hidden) and the cause."""
    text = str(exc).strip().replace("\n", " ")
    password = urlsplit(settings.url).password
    if password:
        text = text.replace(password, "***")
    what = f" ({doing})" if doing else ""
    return BackendUnavailable(f"PostgreSQL at {redact(settings.url)} is unavailable{what}: "
                              f"{type(exc).__name__}: {text}")


def connect(settings: Settings, *, autocommit: bool = True) -> psycopg.Connection[Any]:
    """A new connection; BackendUnavailable (with the cause) when it cannot be made."""
    try:
        return psycopg.connect(settings.conninfo, autocommit=autocommit,
                               **settings.connect_kwargs)
    except psycopg.OperationalError as exc:
        raise unavailable(settings, exc, "cannot connect") from None


def close_quietly(conn: psycopg.Connection[Any]) -> None:
    try:
        conn.close()
    except Exception:
        pass


def looks_alive(conn: psycopg.Connection[Any]) -> bool:
    """An idle connection is fine when it is open and nothing waits on its socket: the server
    only writes to an idle session to say goodbye (shutdown, restart, idle timeout)."""
    if conn.closed or conn.pgconn.status != pq.ConnStatus.OK:
        return False
    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        return False
    try:
        poller = select.poll()
        poller.register(conn.pgconn.socket, select.POLLIN)
        return not poller.poll(0)
    except (OSError, ValueError, psycopg.OperationalError):
        return False


class Pool:
    """Up to `size` connections for the threads of one process (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pid = os.getpid()
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(settings.pool_size)
        self._closed = False

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        if not self._slots.acquire(timeout=self.settings.timeout):
            raise BackendUnavailable(
                f"PostgreSQL at {redact(self.settings.url)}: all {self.settings.pool_size} "
                f"connections of this process stayed busy for {self.settings.timeout:g}s "
                "(raise pool= in the URL?)")
        conn: psycopg.Connection[Any] | None = None
        try:
            conn = self._take()
            yield conn
        finally:
            if conn is not None:
                self._give_back(conn)
            self._slots.release()

    def _take(self) -> psycopg.Connection[Any]:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return connect(self.settings)
            if looks_alive(conn):
                return conn
            close_quietly(conn)

    def _give_back(self, conn: psycopg.Connection[Any]) -> None:
        keep = (not self._closed and not conn.closed and not getattr(conn, "broken", False)
                and conn.info.transaction_status == pq.TransactionStatus.IDLE)
        if keep:
            with self._lock:
                self._idle.append(conn)
        else:
            close_quietly(conn)

    def close(self) -> None:
        """Close the idle connections (busy ones close when they come back). Only in the
        process that opened them: a forked child must never touch its parent's sockets."""
        self._closed = True
        if os.getpid() != self.pid:
            return
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            close_quietly(conn)
