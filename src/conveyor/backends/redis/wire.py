"""The Redis backend's plumbing: URL options, one connection per thread and process (see
resp.py), scripts called by SHA, and connection failures turned into BackendUnavailable.

No connection pool: a thread keeps its connection in a thread-local keyed by the process id,
so a forked child never touches its parent's sockets (it opens its own on first use), and a
thread's calls and its subscriptions share one connection. redis-py's retries are off: a call
fails within the URL's `timeout`, except that a connection left idle across a server restart
is replaced once, so the first call after the server is back works.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from ...errors import BackendUnavailable, ConfigError
from ..base import redact

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as _ConnectionError
    from redis.exceptions import NoScriptError
    from redis.exceptions import TimeoutError as _TimeoutError
    from redis.retry import Retry

    from .resp import Conn, pack

    try:  # redis-py >= 7: no maintenance notifications (a plain Redis sends none)
        from redis.maint_notifications import MaintNotificationsConfig

        _EXTRA_OPTIONS: dict[str, Any] = {
            "maint_notifications_config": MaintNotificationsConfig(enabled=False)}
    except ImportError:
        _EXTRA_OPTIONS = {}

    _HAVE_REDIS = True
except ImportError:  # pragma: no cover - exercised only without the extra installed
    _HAVE_REDIS = False

DEFAULT_PREFIX = "conveyor"
DEFAULT_TIMEOUT = 5.0

def hide(url: str) -> str:
    """`redact`, also for a URL it cannot parse (it raises on a bad port)."""
    try:
        return redact(url)
    except ValueError:
        return re.sub(r"(//[^/@]*?:)[^/@]*@", r"\1***@", url)


def parse_redis_url(url: str) -> tuple[str, str, float]:
    """`redis://`, `rediss://`, `unix://` URL -> (URL for redis-py, key prefix, timeout)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(f"bad Redis URL {hide(url)!r}: {exc}") from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"bad Redis URL {hide(url)!r}: the scheme must be redis://, "
                          "rediss:// or unix://")
    if parts.scheme == "unix" and not parts.path:
        raise ConfigError(f"bad Redis URL {hide(url)!r}: unix:// needs a socket path, e.g. "
                          "unix:///run/redis.sock?db=0")
    rest: list[tuple[str, str]] = []
    prefix, timeout = DEFAULT_PREFIX, DEFAULT_TIMEOUT
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "prefix":
            prefix = value
        elif key == "timeout":
            try:
                timeout = float(value)
            except ValueError:
                timeout = -1.0
            if not timeout > 0:
                raise ConfigError(f"bad Redis URL {hide(url)!r}: timeout must be a positive "
                                  f"number of seconds, not {value!r}")
        else:
            rest.append((key, value))
    if not prefix:
        raise ConfigError(f"bad Redis URL {hide(url)!r}: prefix must not be empty")
    query = urlencode(rest)  # (urlunsplit would turn unix:///path into unix:/path)
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    return (f"{base}?{query}" if query else base), prefix, timeout


class Script:
    """One Lua script: the shared head (common.lua) and its own body, known by SHA1."""

    def __init__(self, name: str, head: str) -> None:
        body = resources.files(__package__).joinpath("scripts", f"{name}.lua").read_text()
        self.name = name
        self.text = f"{head}\n{body}"
        self.sha = hashlib.sha1(self.text.encode(), usedforsecurity=False).hexdigest()


def load_scripts(*names: str) -> dict[str, Script]:
    head = resources.files(__package__).joinpath("scripts", "common.lua").read_text()
    return {n: Script(n, head) for n in names}


class ThreadState:
    """What one thread of one process holds: its connection, and what the last empty claim
    said about when work is next due (so an idle worker's wait needs no read)."""

    __slots__ = ("conn", "key", "me", "registered", "stash")

    def __init__(self, key: tuple[int, int], conn: Conn, me: bytes) -> None:
        self.key = key
        self.conn = conn
        self.me = me  # this thread's wake-up channel, once it waits for work
        self.registered = False  # its last claim found nothing and put it on the idle lists
        # After such a claim: (its queues, when work is next due, the connection generation)
        self.stash: tuple[tuple[str, ...] | None, str, int] | None = None


class Wire:
    """Connections and script calls for one backend object, safe across threads and forks."""

    def __init__(self, url: str) -> None:
        if not _HAVE_REDIS:
            raise ConfigError("the Redis backend needs the redis package: "
                              "pip install conveyor[redis]")
        self.url = url
        redis_url, self.prefix, self.timeout = parse_redis_url(url)
        try:
            pool = redis.ConnectionPool.from_url(
                redis_url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout,
                retry=Retry(NoBackoff(), 0), protocol=3, health_check_interval=0,
                **_EXTRA_OPTIONS)
            self._connection_class = pool.connection_class
            self._kwargs = dict(pool.connection_kwargs)
            self._connection_class(**self._kwargs)  # validates the options; no I/O
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"bad Redis URL {hide(url)!r}: {exc}") from None
        self._local = threading.local()
        self._epoch = 0
        self._heads: dict[str, bytes] = {}  # script SHA -> "EVALSHA sha 0 prefix", packed
        self._pid = 0
        self._forget_connections()

    def _forget_connections(self) -> None:
        """In a new process (a forked child): forget the parent's connections, and the lock
        another parent thread may have held at the fork; the parent's sockets are never
        touched, the child opens its own on first use."""
        self._pid = os.getpid()
        self._all: weakref.WeakSet[Any] = weakref.WeakSet()  # this process's connections
        self._all_lock = threading.Lock()

    # --- connections ----------------------------------------------------------------------
    def _new_connection(self) -> Any:
        conn = self._connection_class(**self._kwargs)
        with self._all_lock:
            self._all.add(conn)
        return conn

    def state(self) -> ThreadState:
        st: ThreadState | None = getattr(self._local, "st", None)
        pid = os.getpid()
        if pid != self._pid:
            self._forget_connections()
        key = (pid, self._epoch)
        if st is None or st.key != key:
            me = f"{self.prefix}:w:{os.urandom(8).hex()}".encode()
            st = ThreadState(key, Conn(self._new_connection(), self.timeout), me)
            self._local.st = st
        return st

    def close(self) -> None:
        """Close this process's connections (any thread's); the next call reconnects."""
        self._epoch += 1
        with self._all_lock:
            conns, self._all = list(self._all), weakref.WeakSet()
        for conn in conns:
            try:
                conn.disconnect()
            except Exception:
                pass

    def unavailable(self, exc: BaseException) -> BackendUnavailable:
        return BackendUnavailable(f"Redis at {hide(self.url)} is unavailable: {exc}")

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Turn connection failures into BackendUnavailable."""
        try:
            yield
        except (_ConnectionError, _TimeoutError, OSError) as exc:
            raise self.unavailable(exc) from exc

    # --- calls ----------------------------------------------------------------------------
    def call(self, script: Script, args: Sequence[Any]) -> Any:
        """EVALSHA `script` with `args` (after the prefix) in one round trip. Loads the script
        when the server does not know it (first use, or after a restart)."""
        head = self._heads.get(script.sha)
        if head is None:
            packed = pack(("EVALSHA", script.sha, 0, self.prefix))
            head = self._heads[script.sha] = packed[packed.index(b"\n") + 1:]
        return self._execute(args, head, script)

    def command(self, *args: Any) -> Any:
        """Any other command, in one round trip."""
        return self._execute(args, b"", None)

    def _execute(self, args: Sequence[Any], head: bytes, script: Script | None) -> Any:
        conn = self.state().conn
        load = retried = False
        while True:
            reused = conn.connected
            try:
                if load:
                    conn.execute(("SCRIPT", "LOAD", script.text))  # type: ignore[union-attr]
                    load = False
                return conn.execute(args, head, 4 if head else 0)
            except NoScriptError:
                if script is None or retried:
                    raise
                load = retried = True
            except _TimeoutError as exc:
                raise self.unavailable(exc) from exc
            except (_ConnectionError, OSError) as exc:
                # A connection idle since before a server restart fails on first use: try
                # once more on a new one. A fresh connection's failure is the answer.
                if not reused:
                    raise self.unavailable(exc) from exc
