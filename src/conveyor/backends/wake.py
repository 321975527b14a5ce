"""Local wake-ups for a backend without server notifications (SQLite).

A process that is about to wait (an idle worker slot, a `Result.get()`) binds a Unix datagram
socket in a directory beside the database; a process that made something happen (an enqueue,
a stored result) sends one byte to each socket of the matching kind there. Waiting stays a
bounded poll, so a missed or refused wake-up only costs the poll interval; what the channel
buys is latency: an idle worker starts a new task, and a waiting `get()` returns, within a
fraction of a millisecond instead of at its next poll.

Sockets exist only while their owner waits, so a busy system pays one `listdir` of an empty
directory per notification. A socket file left by a killed process is removed by the next
sender that finds nobody listening on it.
"""

from __future__ import annotations

import hashlib
import os
import select
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

WORKERS = "w"  # idle worker slots: woken by enqueues
RESULTS = "r"  # waiting get()s: woken by stored results
_MAX_PATH = 107  # a socket path must fit in sun_path (108 bytes with its NUL)
_NAME_ROOM = 20  # "/" + kind + pid + "-" + native thread id


def channel_directory(database: str) -> str:
    """Where the sockets of one database live: beside it (`<file>-wake`), or, when that path
    is too long for a socket, a directory in the temp dir named by a hash of the file's path."""
    beside = os.path.abspath(database) + "-wake"
    if len(beside) + _NAME_ROOM <= _MAX_PATH:
        return beside
    digest = hashlib.sha256(os.path.abspath(database).encode()).hexdigest()[:24]
    return os.path.join(tempfile.gettempdir(), f"conveyor-wake-{digest}")


class WakeChannel:
    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.usable = hasattr(socket, "AF_UNIX") and len(directory) + _NAME_ROOM <= _MAX_PATH
        self._local = threading.local()
        self._made = False

    def _sender(self) -> socket.socket:
        sock: socket.socket | None = getattr(self._local, "sock", None)
        if sock is None or getattr(self._local, "pid", 0) != os.getpid():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.setblocking(False)
            self._local.sock, self._local.pid = sock, os.getpid()
        return sock

    def notify(self, kind: str) -> None:
        """Wake every waiter of `kind`. Never raises: a wake-up is only a hint."""
        if not self.usable:
            return
        try:
            names = os.listdir(self.directory)
        except OSError:
            return
        for name in names:
            if not name.startswith(kind):
                continue
            path = os.path.join(self.directory, name)
            try:
                self._sender().sendto(b"!", path)
            except BlockingIOError:
                pass  # its buffer is full: it has been woken already
            except (ConnectionRefusedError, FileNotFoundError):
                try:
                    os.unlink(path)  # nobody listens there any more: a killed waiter's file
                except OSError:
                    pass
            except OSError:
                pass

    @contextmanager
    def listening(self, kind: str) -> Iterator[socket.socket | None]:
        """A socket that `notify(kind)` reaches while the block runs (None if unusable)."""
        sock = self._bind(kind) if self.usable else None
        if sock is None:
            yield None
            return
        path = sock.getsockname()
        try:
            yield sock
        finally:
            sock.close()
            try:
                os.unlink(path)
            except OSError:
                pass

    def _bind(self, kind: str) -> socket.socket | None:
        path = os.path.join(self.directory, f"{kind}{os.getpid()}-{threading.get_native_id()}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        for _ in range(2):
            try:
                if not self._made:
                    os.makedirs(self.directory, exist_ok=True)
                    self._made = True
                sock.bind(path)
                sock.setblocking(False)
                return sock
            except OSError:  # a leftover of an earlier process with this pid, or no directory
                self._made = False
                try:
                    os.unlink(path)
                except OSError:
                    pass
        self.usable = False  # e.g. a directory we may not write to: polling alone from now on
        sock.close()
        return None


def wait_readable(sock: socket.socket, timeout: float) -> bool:
    """Wait up to `timeout` seconds for a wake-up; swallow what arrived. True if woken."""
    ready, _, _ = select.select([sock], [], [], max(0.0, timeout))
    if not ready:
        return False
    try:
        while sock.recv(64):
            pass
    except (BlockingIOError, OSError):
        pass
    return True
