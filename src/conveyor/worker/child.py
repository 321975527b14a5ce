"""A process-pool child: one slot with its own backend connection, talking to the supervisor
over a pipe ("claimed", "start", "done", "bye"); the supervisor talks back with "stop"."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

from ..backends.base import Delivery
from .consumer import Held, LeaseKeeper, Slot
from .executor import Prepared

if TYPE_CHECKING:
    from ..app import Conveyor

log = logging.getLogger("conveyor.worker")


class PipeReporter:
    """Tells the supervisor what it needs to settle a task if this process dies or overruns:
    one message per task start, plus one per batch of more than one."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
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
        self.send(("start", d.id, d.token, p.task.name, p.attempt, p.retries, deadline))

    def finished(self, d: Delivery, timed: bool) -> None:
        if timed:  # only the supervisor's deadline watch needs to hear it
            self.send(("done", d.id))


def child_main(app: Conveyor, conn: Connection, worker_id: str, queues: list[str] | None,
               max_tasks: int | None) -> None:
    """Entry point of a forked child."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when we stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stop = threading.Event()
    held = Held()
    backend = app.backend  # reconnects on first use: connections are per process
    reporter = PipeReporter(conn)

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
    slot = Slot(app, backend, queues, worker_id, held, stop, reporter, max_tasks)
    code = 0
    try:
        slot.run()
    except BaseException:
        log.exception("worker child crashed")
        code = 1
    stop.set()
    if code == 0:  # a crash says no bye: the supervisor then settles what this child held
        reporter.send(("bye", slot.done))
    try:
        backend.close()
    finally:
        logging.shutdown()
        os._exit(code)  # skip atexit handlers inherited from the supervisor
