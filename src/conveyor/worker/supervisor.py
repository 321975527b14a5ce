"""The process-pool supervisor: spawn, reap, replace, signals, hard time limits.

It never touches task payloads. Each child tells it which task it started (id, lease token,
name, attempt, deadline); with that it can settle the task when the child dies (`worker
lost`) or overruns (`TaskTimeout`), fenced by the token so it never overrides a settle the
child managed to make.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

from ..backends.base import Delivery, Release
from .child import child_main
from .consumer import HEARTBEAT_EVERY
from .control import TERMINATED, RevocationWatch, revoked_outcome
from .current import SIZE as CURRENT_SIZE
from .current import CurrentTask
from .executor import Finished, lost_failure, timeout_failure
from .flow import after_lost_step
from .limits import free_slots
from .stats import Stats

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from ..app import Conveyor

log = logging.getLogger("conveyor.worker")

QUICK_DEATH = 1.0  # a child dying sooner than this after its start is respawned with backoff
MAX_RESPAWN_DELAY = 10.0


@dataclass(slots=True)
class Running:
    id: str
    token: str
    task: str
    attempt: int
    retries: int
    deadline: float | None


@dataclass(slots=True)
class Child:
    index: int
    process: BaseProcess
    conn: Connection
    running: Running | None = None
    claimed: dict[str, str] = field(default_factory=dict)  # id -> token of its last batch
    said_bye: bool = False
    born: float = field(default_factory=time.monotonic)
    current: CurrentTask | None = None


class Supervisor:
    def __init__(self, app: Conveyor, *, concurrency: int, queues: list[str] | None,
                 worker_id: str, max_tasks_per_child: int | None, grace: float,
                 heartbeat: Callable[[], float | None] | None = None) -> None:
        self.app = app
        self.concurrency = concurrency
        self.queues = queues
        self.worker_id = worker_id
        self.max_tasks = max_tasks_per_child
        self.grace = grace
        self.heartbeat = heartbeat
        self.next_beat = 0.0  # monotonic time of the next heartbeat (the loop sets it)
        self.children: dict[int, Child] = {}
        self.respawn_at: dict[int, float] = {}  # index -> when to start its replacement
        self.crash_delay: dict[int, float] = {}  # index -> backoff after quick deaths
        self.stopping_since: float | None = None
        self.signals = 0
        methods = multiprocessing.get_all_start_methods()
        self.mp: Any = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        self._wake_r, self._wake_w = socket.socketpair()
        self.revocations = RevocationWatch(app.backend)  # revoke(terminate=True): control.py
        # Counts of what this process settles for its children, sent from the loop: no thread
        # of ours may hold a lock while a child is forked.
        self.stats = Stats(app, app.backend)

    # --- lifecycle ------------------------------------------------------------------------
    def run(self) -> int:
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        old_fd = signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for i in range(self.concurrency):
                self.spawn(i)
            self.loop()
            self.stats.flush()
        finally:
            signal.set_wakeup_fd(old_fd)
            for s, h in old.items():
                signal.signal(s, h)
        return 0

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals += 1

    def spawn(self, index: int) -> None:
        parent, child = self.mp.Pipe(duplex=True)
        shared = self.mp.RawArray("B", CURRENT_SIZE)
        proc = self.mp.Process(target=child_main, name=f"conveyor-child-{index}",
                               args=(self.app, child, shared, self.worker_id, self.queues,
                                     self.max_tasks), daemon=False)
        proc.start()
        child.close()
        self.children[index] = Child(index, proc, parent, current=CurrentTask(shared))
        log.debug("child %d started (pid %s)", index, proc.pid)

    def loop(self) -> None:
        next_beat = 0.0
        handled_signals = 0
        while self.children or (self.respawn_at and self.stopping_since is None):
            now = time.monotonic()
            for index, when in list(self.respawn_at.items()):
                if now >= when and self.stopping_since is None:
                    del self.respawn_at[index]
                    self.spawn(index)
            if now >= next_beat:
                soon = self._safe(self.heartbeat) if self.heartbeat is not None else None
                self.stats.flush()  # a no-op unless a child's task was settled here
                next_beat = now + (HEARTBEAT_EVERY if soon is None
                                   else min(HEARTBEAT_EVERY, soon))
                self.next_beat = next_beat
            if self.signals != handled_signals:
                handled_signals = self.signals
                self.on_stop_signal(handled_signals)
            if (self.stopping_since is not None
                    and time.monotonic() - self.stopping_since > self.grace):
                log.warning("grace period of %gs is over: stopping at once", self.grace)
                self.stop_now()
                break
            self.check_deadlines()
            self.check_revoked()
            waitables: list[Any] = [self._wake_r]
            for c in self.children.values():
                waitables += [c.conn, c.process.sentinel]
            ready = wait(waitables, timeout=self._next_timeout())
            if self._wake_r in ready:
                try:
                    while self._wake_r.recv(512):
                        pass
                except BlockingIOError:
                    pass
            for c in list(self.children.values()):
                if c.conn in ready:
                    self.read(c)
                if c.process.sentinel in ready:
                    self.reap(c)

    def _next_timeout(self) -> float:
        timeout = max(0.0, min(HEARTBEAT_EVERY, self.next_beat - time.monotonic()))
        if self.respawn_at:
            timeout = min(timeout, max(0.0, min(self.respawn_at.values()) - time.monotonic()))
        wall = self.app.clock.now()
        for c in self.children.values():
            if c.running is not None and c.running.deadline is not None:
                timeout = min(timeout, max(0.0, c.running.deadline - wall))
        return timeout

    # --- messages from children -----------------------------------------------------------
    def read(self, c: Child) -> None:
        try:
            while c.conn.poll():
                self.on_message(c, c.conn.recv())
        except (EOFError, OSError):
            pass

    def on_message(self, c: Child, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "start":
            _, mid, token, task, attempt, retries, deadline = msg
            # `claimed` keeps the batch's finished tasks too: their acks ride with the next
            # claim, so if the child dies first they are released at once, not after a lease.
            c.running = Running(mid, token, task, attempt, retries, deadline)
        elif kind == "claimed":
            c.claimed = dict(msg[1])
        elif kind == "done":
            if c.running is not None and c.running.id == msg[1]:
                c.running = None
        elif kind == "bye":
            c.said_bye = True
            c.running = None
            c.claimed.clear()

    # --- child ends -----------------------------------------------------------------------
    def reap(self, c: Child) -> None:
        self.read(c)  # what it said before dying
        c.process.join(timeout=5)
        code = c.process.exitcode
        del self.children[c.index]
        c.conn.close()
        delay = 0.0
        if not c.said_bye:
            how = _describe_exit(code)
            log.error("child %d (pid %s) died: %s", c.index, c.process.pid, how)
            self.settle_lost(c, how)
            if time.monotonic() - c.born < QUICK_DEATH:  # crashing at once: back off
                delay = min(max(self.crash_delay.get(c.index, 0.0) * 2, 0.1), MAX_RESPAWN_DELAY)
                log.warning("child %d died within %.0fs of starting: next start in %.1fs",
                            c.index, QUICK_DEATH, delay)
        self.crash_delay[c.index] = delay
        if self.stopping_since is None:
            if delay:
                self.respawn_at[c.index] = time.monotonic() + delay
            else:
                self.spawn(c.index)

    @staticmethod
    def latest_start(c: Child) -> None:
        """Once a child is dead: its last task start, from shared memory (every start is
        there; only timed ones also come over the pipe)."""
        record = c.current.read() if c.current is not None else None
        if record is not None:
            c.running = Running(*record, None)

    def settle_lost(self, c: Child, how: str) -> None:
        self.latest_start(c)
        if c.running is not None:
            r = c.running
            task = self.app.tasks.get(r.task)
            if task is not None:
                fin = lost_failure(self.app, _delivery(r), task, r.attempt, r.retries, how)
                self.apply(fin, r.task)
        self.give_back(c)

    def give_back(self, c: Child) -> None:
        if not c.claimed:
            return
        now = self.app.clock.now()
        releases = [Release(mid, tok, now, attempted=False) for mid, tok in c.claimed.items()
                    if c.running is None or mid != c.running.id]
        c.claimed.clear()
        if releases:
            self._settle_quietly(releases, now)

    def apply(self, fin: Finished, task: str) -> None:
        s = fin.settlement
        free_slots(self.app, task, s.id, s.token)  # the dead child's concurrency slot
        try:
            after_lost_step(self.app, s, task)  # a workflow's next steps, before the settle
        except Exception as exc:
            log.error("%s[%s]: could not fail the steps of its workflow: %s", task, s.id, exc)
        try:
            ok = self.app.backend.settle([s], self.app.clock.now())[0]
        except Exception as exc:
            log.error("could not settle %s[%s]: %s (it runs again after its lease)", task,
                      s.id, exc)
            return
        self.stats.record(fin, task, ok)
        if ok:
            log.error("%s[%s] %s: %s", task, s.id, fin.outcome, fin.detail or
                      getattr(s, "reason", ""))

    # --- time limits ----------------------------------------------------------------------
    def check_deadlines(self) -> None:
        now = self.app.clock.now()
        for c in list(self.children.values()):
            r = c.running
            if r is None or r.deadline is None or now < r.deadline:
                continue
            self.read(c)  # it may have just finished
            r = c.running
            if r is None or r.deadline is None or now < r.deadline:
                continue
            log.error("%s[%s] passed its time limit: killing child %d (pid %s)", r.task, r.id,
                      c.index, c.process.pid)
            self.kill(c)
            task = self.app.tasks.get(r.task)
            if task is not None:
                self.apply(timeout_failure(self.app, _delivery(r), task, r.attempt, r.retries,
                                           task.options.timeout), r.task)
            c.running = None
            self.give_back(c)
            c.said_bye = True  # settled here; reap() must not settle it again
            self.reap(c)

    def check_revoked(self) -> None:
        """Kill the children running tasks that revoke(terminate=True) asked to stop, and
        settle those REVOKED (fenced by the token); they are replaced like any dead child."""
        if not self.revocations.due():
            return
        running = {}
        for c in self.children.values():
            record = c.current.running() if c.current is not None else None
            if record is not None:
                running[record[0]] = (c, record)
        for mid in self.revocations.to_stop(list(running)):
            c, record = running[mid]
            if c.index not in self.children or c.current is None or (
                    c.current.running() != record):
                continue  # it finished meanwhile
            r = Running(*record, None)
            log.warning("%s[%s] revoked: killing child %d (pid %s)", r.task, r.id, c.index,
                        c.process.pid)
            self.kill(c)
            self.apply(revoked_outcome(self.app, _delivery(r), self.app.tasks.get(r.task),
                                       TERMINATED), r.task)
            c.running = None
            self.give_back(c)
            c.said_bye = True  # settled here; reap() must not settle it again
            self.reap(c)

    def kill(self, c: Child) -> None:
        try:
            c.process.kill()
        except (OSError, AttributeError):
            pass
        c.process.join(timeout=5)

    # --- stopping -------------------------------------------------------------------------
    def on_stop_signal(self, count: int) -> None:
        if count == 1 and self.stopping_since is None:
            log.info("stopping: finishing running tasks (up to %gs); signal again to stop "
                     "at once", self.grace)
            self.stopping_since = time.monotonic()
            for c in self.children.values():
                try:
                    c.conn.send(("stop",))
                except (OSError, EOFError):
                    pass
        elif count >= 2:
            log.warning("stopping at once: unfinished tasks go back to the queue")
            self.stop_now()

    def stop_now(self) -> None:
        for c in list(self.children.values()):
            self.kill(c)
        now = self.app.clock.now()
        for c in list(self.children.values()):
            self.read(c)
            if not c.said_bye:
                self.latest_start(c)
                if c.running is not None:
                    c.claimed[c.running.id] = c.running.token
                    c.running = None
                releases = [Release(mid, tok, now, attempted=False)
                            for mid, tok in c.claimed.items()]
                if releases:
                    self._settle_quietly(releases, now)
            c.conn.close()
        self.children.clear()

    def _settle_quietly(self, releases: list[Release], now: float) -> None:
        self._safe(lambda: self.app.backend.settle(releases, now))

    def _safe(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:
            log.warning("backend call failed: %s", exc)
            return None


def _delivery(r: Running) -> Delivery:
    return Delivery(r.id, "", b"", 0, r.attempt, r.token, 0.0)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        extra = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"killed by {name}{extra}"
    return f"exited with code {code}"


def default_concurrency() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else (os.cpu_count() or 1))
