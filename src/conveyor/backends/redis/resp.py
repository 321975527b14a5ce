"""One thread's Redis connection: RESP3 request/reply on a redis-py connection's socket, with
pub/sub on the same connection.

redis-py opens the connection (TCP, TLS or Unix socket; HELLO 3 with AUTH, SELECT) and closes
it; the calls in between are written and read here, because packing a command and parsing a
reply took redis-py about 25 us of CPU per call (py-spy), as much as the round trip itself.

RESP3 lets a subscribed connection run any command, so one connection does both: pub/sub
changes ride in front of the next command (no extra round trip, no extra write), and the
server answers in order. A subscription sent with (or before) a command is in force when that
command runs, so "subscribe, then read" needs one round trip and has no window in which a
notification could slip by. Push frames (confirmations, messages) that arrive while a reply is
read are kept in `events`; a message counts as `fresh` only when it arrives after its
channel's latest (P)SUBSCRIBE was confirmed, so what an earlier subscription left behind is
never taken for news.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from redis.exceptions import (
    BusyLoadingError,
    NoScriptError,
    ReadOnlyError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...errors import ConfigError

Key = tuple[str, bytes]  # ("c", channel) or ("p", pattern)
Event = tuple[Key, bytes, bytes, bool]  # a message: subscription, channel, data, fresh?

_ERRORS: dict[bytes, type[Exception]] = {
    b"NOSCRIPT": NoScriptError,
    b"LOADING": BusyLoadingError,
    b"READONLY": ReadOnlyError,
}
_VERBS = {"c": (b"SUBSCRIBE", b"UNSUBSCRIBE"), "p": (b"PSUBSCRIBE", b"PUNSUBSCRIBE")}


def pack(args: Sequence[Any], head: bytes = b"", n_head: int = 0) -> bytes:
    """One command in RESP: `head` (`n_head` arguments already packed), then `args`: bytes,
    str (UTF-8), int or float (repr, so a float goes exactly)."""
    out = [b"*%d\r\n" % (n_head + len(args)), head]
    for a in args:
        t = type(a)
        b = a if t is bytes else a.encode() if t is str else repr(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class Push(list[Any]):
    """A push frame (RESP3 `>`): pub/sub confirmations and messages."""


class Conn:
    """A redis-py connection (protocol 3) used by one thread, for commands and pub/sub."""

    def __init__(self, conn: Any, timeout: float) -> None:
        self.conn = conn
        self.timeout = timeout
        self.sock: Any = None
        self.generation = 0  # bumped at every (re)connect: subscriptions start over
        self.events: deque[Event] = deque()
        self._buf = bytearray()
        self._pos = 0
        self._out: list[bytes] = []  # (un)subscribe commands to send with the next write
        self._wanted: dict[str, frozenset[Key]] = {}  # owner -> what it listens to
        self._active: set[Key] = set()  # what the server was asked for
        self._unconfirmed: dict[Key, int] = {}

    @property
    def connected(self) -> bool:
        return self.sock is not None

    def close(self) -> None:
        self.sock = None
        self._buf.clear()
        self._pos = 0
        self._out.clear()
        self._active.clear()
        self._unconfirmed.clear()
        self.events.clear()
        self.conn.disconnect()

    def _connect(self) -> None:
        try:
            self.conn.connect()
        except ResponseError as exc:
            if "HELLO" in str(exc).upper():
                raise ConfigError(f"conveyor needs Redis 6 or later (RESP3): {exc}") from None
            raise
        self.sock = self.conn._sock
        self.generation += 1
        self._sync()  # what is wanted is asked for again on the new connection

    # --- pub/sub --------------------------------------------------------------------------
    def wanted(self, owner: str) -> frozenset[Key]:
        return self._wanted.get(owner, frozenset())

    def want(self, owner: str, keys: frozenset[Key]) -> None:
        """Listen to exactly `keys` for `owner`; the commands go with the next write."""
        if self._wanted.get(owner, frozenset()) != keys:
            self._wanted[owner] = keys
            self._sync()

    def _sync(self) -> None:
        desired: set[Key] = set().union(*self._wanted.values())
        for kind, (verb, unverb) in _VERBS.items():
            drop = [n for k, n in self._active - desired if k == kind]
            if drop:
                self._out.append(pack([unverb, *drop]))
            add = [n for k, n in desired - self._active if k == kind]
            if add:
                self._out.append(pack([verb, *add]))
                for n in add:
                    self._unconfirmed[(kind, n)] = self._unconfirmed.get((kind, n), 0) + 1
        self._active = desired

    def _on_push(self, frame: Push) -> None:
        kind = frame[0] if frame else b""
        if kind in (b"subscribe", b"psubscribe"):
            key = ("c" if kind == b"subscribe" else "p", bytes(frame[1]))
            left = self._unconfirmed.get(key, 0) - 1
            if left > 0:
                self._unconfirmed[key] = left
            else:
                self._unconfirmed.pop(key, None)
        elif kind == b"message" or kind == b"pmessage":
            key = ("c", bytes(frame[1])) if kind == b"message" else ("p", bytes(frame[1]))
            fresh = key in self._active and key not in self._unconfirmed
            self.events.append((key, bytes(frame[-2]), bytes(frame[-1]), fresh))
        # unsubscribe confirmations and other pushes: nothing to do

    def wait_event(self, deadline: float) -> Event | None:
        """The next pub/sub message, waiting until `deadline` (time.monotonic()); None when
        the time is up. Sends pending (un)subscribe commands first."""
        if self.sock is None:
            self._connect()
        if self._out:
            self._send(b"")
        while not self.events:
            if self._pos == len(self._buf):  # nothing buffered: wait for the socket
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                try:
                    self.sock.settimeout(left)
                    try:
                        data = self.sock.recv(65536)
                    finally:
                        self.sock.settimeout(self.timeout)
                except TimeoutError:
                    return None
                except OSError as exc:
                    self.close()
                    raise RedisConnectionError(f"Error reading from Redis: {exc}") from None
                if not data:
                    self.close()
                    raise RedisConnectionError("Connection closed by the server")
                self._buf += data
            frame = self._guarded(self._frame)
            if not isinstance(frame, Push):
                self.close()
                raise RedisConnectionError(f"unexpected reply from Redis: {frame!r:.80}")
            self._on_push(frame)
        return self.events.popleft()

    # --- commands -------------------------------------------------------------------------
    def execute(self, args: Sequence[Any], head: bytes = b"", n_head: int = 0) -> Any:
        """Send one command (see `pack`), after any pending (un)subscribe commands, and return
        its reply (an error reply is raised)."""
        if self.sock is None:
            self._connect()
        self._send(pack(args, head, n_head))
        reply = self._guarded(self._reply)
        if self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        if isinstance(reply, Exception):
            if isinstance(reply, RedisConnectionError):
                self.close()
            raise reply
        return reply

    def _send(self, data: bytes) -> None:
        if self._out:
            data = b"".join([*self._out, data])
            self._out.clear()
        self._guarded(lambda: self.sock.sendall(data))

    def _guarded(self, fn: Any) -> Any:
        try:
            return fn()
        except TimeoutError:  # socket.timeout
            self.close()
            raise RedisTimeoutError("Timeout talking to Redis") from None
        except OSError as exc:
            self.close()
            raise RedisConnectionError(f"Error talking to Redis: {exc}") from None
        except BaseException:  # anything else (a parse error, ^C) leaves it out of step
            self.close()
            raise

    def _reply(self) -> Any:
        while True:
            frame = self._frame()
            if not isinstance(frame, Push):
                return frame
            self._on_push(frame)

    # --- RESP3 parsing --------------------------------------------------------------------
    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise RedisConnectionError("Connection closed by the server")
        if self._pos:
            del self._buf[:self._pos]
            self._pos = 0
        self._buf += data

    def _line(self) -> bytes:
        while True:
            end = self._buf.find(b"\r\n", self._pos)
            if end >= 0:
                line = bytes(self._buf[self._pos:end])
                self._pos = end + 2
                return line
            self._fill()

    def _blob(self, n: int) -> bytes:
        while len(self._buf) - self._pos < n + 2:
            self._fill()
        data = bytes(self._buf[self._pos:self._pos + n])
        self._pos += n + 2
        return data

    def _frame(self) -> Any:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._blob(n)
        if kind == b"*" or kind == b"~":
            n = int(rest)
            return None if n < 0 else [self._frame() for _ in range(n)]
        if kind == b":":
            return int(rest)
        if kind == b"_":
            return None
        if kind == b">":
            return Push(self._frame() for _ in range(int(rest)))
        if kind == b"%":
            return {self._frame(): self._frame() for _ in range(int(rest))}
        if kind == b"+":
            return rest
        if kind == b"-":
            return _error(rest)
        if kind == b"!":
            return _error(self._blob(int(rest)))
        if kind == b",":
            return float(rest)
        if kind == b"#":
            return rest == b"t"
        if kind == b"(":
            return int(rest)
        if kind == b"=":
            return self._blob(int(rest))[4:]  # "txt:" and the text
        if kind == b"|":  # attributes: read and ignore, the reply follows
            {self._frame(): self._frame() for _ in range(int(rest))}  # noqa: B018
            return self._frame()
        raise RedisConnectionError(f"unexpected reply from Redis: {line[:50]!r}")


def _error(text: bytes) -> Exception:
    code = text.split(b" ", 1)[0]
    message = text.decode(errors="replace")
    if code in _ERRORS:
        return _ERRORS[code](message[len(code) + 1:])
    return ResponseError(message)
