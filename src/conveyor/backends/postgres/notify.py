"""LISTEN/NOTIFY wake-ups: idle workers hear of enqueues, waiting get()s of finished tasks.

Enqueues and releases `pg_notify(<work channel>, queue)` and settles `pg_notify(<done channel>,
ids joined by newlines)` inside their own transactions, so a notification is delivered exactly
when what it announces is committed. In each process one daemon thread per channel holds a
LISTEN connection (opened on the first wait, again after a fork) and sets the `Event` of every
thread waiting there whose interest the payload names. Waiting stays a bounded poll, so a lost
notification (e.g. while the listener reconnects) costs at most the safety interval.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("conveyor.postgres")

EVERYTHING = "*"  # a payload that wakes every waiter of the channel


def channel_name(schema: str, kind: str) -> str:
    """The channel of one schema: `conveyor.<schema>.<kind>` (a hash when that is too long
    for an identifier)."""
    name = f"conveyor.{schema}.{kind}"
    if len(name.encode()) <= 63:
        return name
    return f"conveyor.{hashlib.sha256(schema.encode()).hexdigest()[:24]}.{kind}"


class Waiter:
    """One waiting thread: woken when a notification names something in `interest` (every
    notification when `interest` is None)."""

    __slots__ = ("event", "interest")

    def __init__(self, interest: set[str] | None) -> None:
        self.interest = interest
        self.event = threading.Event()


class Listener:
    """A daemon thread LISTENing on one channel for this process."""

    def __init__(self, connect: Callable[[], Any], channel: str) -> None:
        self.channel = channel
        self.pid = os.getpid()
        self._connect = connect
        self._lock = threading.Lock()
        self._waiters: set[Waiter] = set()
        self._stop = threading.Event()
        self.listening = threading.Event()  # LISTEN is in effect (cleared while reconnecting)
        self._thread = threading.Thread(target=self._run, name=f"conveyor-listen-{channel}",
                                        daemon=True)
        self._thread.start()

    # --- the waiting side -----------------------------------------------------------------
    def add(self, waiter: Waiter) -> None:
        with self._lock:
            self._waiters.add(waiter)

    def remove(self, waiter: Waiter) -> None:
        with self._lock:
            self._waiters.discard(waiter)

    def wait_listening(self, timeout: float) -> bool:
        return self.listening.wait(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        self._wake_all()

    # --- the listening thread -------------------------------------------------------------
    def _run(self) -> None:
        pause = 0.05
        while not self._stop.is_set():
            conn = None
            try:
                conn = self._connect()
                conn.execute(f'LISTEN "{self.channel}"')
                self.listening.set()
                self._wake_all()  # what happened while we were not listening went unheard
                pause = 0.05
                while not self._stop.is_set():
                    try:  # returns every second, to see `stop` (psycopg >= 3.2)
                        notes = conn.notifies(timeout=1.0)
                    except TypeError:  # psycopg 3.1: blocks until the next notification
                        notes = conn.notifies()
                    for note in notes:
                        self._dispatch(note.payload)
            except Exception as exc:
                if not self._stop.is_set():
                    log.debug("listener on %s failed: %s; reconnecting", self.channel, exc)
            finally:
                self.listening.clear()
                if conn is not None and os.getpid() == self.pid:
                    try:
                        conn.close()
                    except Exception:
                        pass
            self._wake_all()  # waiters fall back to polling while we are away
            self._stop.wait(pause)
            pause = min(pause * 2, 2.0)

    def _dispatch(self, payload: str) -> None:
        if payload == EVERYTHING:
            self._wake_all()
            return
        names: Iterable[str] = payload.split("\n") if "\n" in payload else (payload,)
        with self._lock:
            for w in self._waiters:
                if w.interest is None or any(n in w.interest for n in names):
                    w.event.set()

    def _wake_all(self) -> None:
        with self._lock:
            for w in self._waiters:
                w.event.set()
