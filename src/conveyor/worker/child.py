"""A process-pool child: one slot with its own backend connection. It tells the supervisor
about its batches and timed tasks over a pipe ("claimed", "start", "done", "bye") and records
every task start in shared memory (`current.py`); the supervisor talks back with "stop"."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from .. import tracing
from ..backends.base import Delivery
from . import timeouts
from .consumer import Held, LeaseKeeper, Slot
from .current import CurrentTask
from .executor import Prepared
from .stats import Stats

if TYPE_CHECKING:
    from ..app import Conveyor

log = logging.getLogger("conveyor.worker")


class PipeReporter:
    """Tells the supervisor what it needs to settle a task if this process dies or overruns:
    a shared-memory record per task start, a pipe message per batch of more than one and per
    start and end of a task with a time limit (the supervisor's deadline watch)."""

    def __init__(self, conn: Connection, current: CurrentTask) -> None:
        self.conn = conn
        self.current = current
        self.lock = threading.Lock()

    def send(self, message: tuple[object, ...]) -> None:
        with self.lock:
            try:
                self.conn.send(message)
            except (OSError, EOFError):
                pass  # the supervisor is gone; the control thread stops us

    def claimed(self, batch: Sequence[Delivery]) -> None:
        self.send(("claimed", [(d.id, d.token) for d in batch]))

    def started(self, p: Prepared, deadline: float | None) -> None:
        d = p.delivery
        record = (d.id, d.token, p.task.name, p.attempt, p.retries)
        if not self.current.write(record) or deadline is not None:
            self.send(("start", *record, deadline))

    def finished(self, d: Delivery, timed: bool) -> None:
        self.current.done()  # no longer running (the supervisor's revocation watch)
        if timed:  # only the supervisor's deadline watch needs to hear it
            self.send(("done", d.id))


def child_main(app: Conveyor, conn: Connection, current: Any, worker_id: str,
               queues: list[str] | None, max_tasks: int | None) -> None:
    """Entry point of a forked child."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when we stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stop = threading.Event()
    held = Held()
    backend = app.backend  # reconnects on first use: connections are per process
    reporter = PipeReporter(conn, CurrentTask(current))

    def listen() -> None:
        try:
            while True:
                if conn.recv() == ("stop",):
                    break
        except (EOFError, OSError):
            log.warning("supervisor gone: stopping")
        stop.set()

    threading.Thread(target=listen, name="conveyor-control", daemon=True).start()
    keeper = LeaseKeeper(app, backend, held, stop)
    keeper.start()
    timeouts.use_signals()  # soft time limits: SIGALRM in this main thread (timeouts.py)
    stats = Stats(app, backend)  # task counters, sent about once a second
    stats.start()
    slot = Slot(app, backend, queues, worker_id, held, stop, reporter, max_tasks, stats)
    code = 0
    try:
        slot.run()
    except BaseException:
        log.exception("worker child crashed")
        code = 1
    stop.set()
    stats.close()
    tracing.flush()  # spans the OpenTelemetry SDK buffers, when it is used
    if code == 0:  # a crash says no bye: the supervisor then settles what this child held
        reporter.send(("bye", slot.done))
    try:
        backend.close()
    finally:
        logging.shutdown()
        os._exit(code)  # skip atexit handlers inherited from the supervisor
