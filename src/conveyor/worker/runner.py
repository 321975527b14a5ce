"""`conveyor worker`: logging, the start-up banner, the worker registry, and the pool."""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..backends.base import WorkerInfo
from ..errors import BackendUnavailable, ConfigError
from .outage import Outage

if TYPE_CHECKING:
    from ..app import Conveyor

log = logging.getLogger("conveyor.worker")
POOLS = ("process", "thread", "async")
HOUSEKEEPING_EVERY = 60.0  # seconds between sweeps of expired results, keys and locks
REGISTER_EVERY = 5.0  # seconds between worker-registry heartbeats (entries live 30 s)


class WorkerFormatter(logging.Formatter):
    """`[time] LEVEL process: message`, with the date part formatted once per second (two
    log lines per task make this a measurable share of a no-op task's cost)."""

    def __init__(self) -> None:
        super().__init__("[%(asctime)s] %(levelname)s %(processName)s: %(message)s")
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return f"{self._stamp},{int(record.msecs):03d}"


def setup_logging(level: str) -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ConfigError(f"unknown log level {level!r}: use DEBUG, INFO, WARNING or ERROR")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(WorkerFormatter())
    root = logging.getLogger("conveyor")
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    root.propagate = False


def run_worker(app: Conveyor, *, concurrency: int | None = None, pool: str = "process",
               queues: list[str] | None = None, max_tasks_per_child: int | None = None,
               log_level: str = "INFO", grace: float = 30.0, node: str | None = None,
               scheduler: bool = True) -> int:
    """Run a worker until SIGTERM/SIGINT. Returns the process exit code. `scheduler`: also
    enqueue the app's periodic ticks (from the heartbeat; each tick happens once however many
    workers do this)."""
    from ..periodic import Scheduler
    from .pools import ThreadHost
    from .supervisor import Supervisor, default_concurrency

    if pool not in POOLS:
        raise ConfigError(f"unknown pool {pool!r}: use one of {', '.join(POOLS)}")
    if pool == "process" and app.url.startswith("memory:"):
        raise ConfigError("memory:// lives in one process and cannot feed a process pool: "
                          "use --pool thread, or a sqlite:/// URL")
    if concurrency is not None and concurrency < 1:
        raise ConfigError("concurrency (-c) must be at least 1")
    if max_tasks_per_child is not None and max_tasks_per_child < 1:
        raise ConfigError("--max-tasks-per-child must be at least 1")
    setup_logging(log_level)
    if concurrency is None:  # async: tasks at once on one loop (aio.DEFAULT_CONCURRENCY)
        from .aio import DEFAULT_CONCURRENCY

        concurrency = DEFAULT_CONCURRENCY if pool == "async" else default_concurrency()
    n = concurrency
    names = queues or app.queues()
    node_name = node or socket.gethostname()
    worker_id = f"{node_name}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    started = app.clock.now()
    info = {"node": node_name, "pid": os.getpid(), "pool": pool, "concurrency": n,
            "queues": names, "started_at": started}

    due = {"register": 0.0, "housekeeping": 0.0}
    outage = Outage("worker heartbeat (registry, housekeeping)", log)
    periodic = Scheduler(app) if scheduler and app.periodic_tasks else None

    def upkeep() -> float | None:
        now = app.clock.now()
        if now >= due["register"]:
            app.backend.put_worker(WorkerInfo(worker_id, info), now, 30.0)
            due["register"] = now + REGISTER_EVERY
        if now >= due["housekeeping"]:
            app.backend.housekeeping(now)
            due["housekeeping"] = now + HOUSEKEEPING_EVERY
        return app.backend.checkpoint()

    def heartbeat() -> float | None:
        """Called about twice a second by the pool: backend upkeep (a SQLite checkpoint), and
        every few seconds say we are alive, every minute drop expired rows. A backend outage
        is logged once, not twice a second. Returns how soon the backend wants the next call
        when that is sooner (a SQLite log growing under load)."""
        if periodic is not None:
            periodic.beat()  # cheap unless a tick is due; handles its own outages
        try:
            soon = upkeep()
        except Exception as exc:
            outage.failed(exc)
            return None
        outage.ok()
        return soon

    banner(app, pool, n, names, worker_id,
           max_tasks_per_child if pool == "process" else None, scheduler)
    if max_tasks_per_child is not None and pool != "process":
        log.warning("--max-tasks-per-child applies to the process pool's children; the %s "
                    "pool runs in this one process, so it is ignored", pool)
    wait_for_backend(app, upkeep)
    for warning in app.backend.startup_warnings():
        log.warning("%s", warning)
    t0 = time.monotonic()
    try:
        if pool == "async":
            from .aio import AsyncHost

            code = AsyncHost(app, concurrency=n, queues=names, worker_id=worker_id,
                             grace=grace, heartbeat=heartbeat).run()
        elif pool == "thread":
            code = ThreadHost(app, concurrency=n, queues=names, worker_id=worker_id,
                              grace=grace, heartbeat=heartbeat).run()
        else:
            code = Supervisor(app, concurrency=n, queues=names, worker_id=worker_id,
                              max_tasks_per_child=max_tasks_per_child, grace=grace,
                              heartbeat=heartbeat).run()
    finally:
        try:
            app.backend.remove_worker(worker_id)
        except Exception as exc:
            log.warning("could not unregister worker: %s", exc)
    log.info("worker %s stopped after %.1fs", worker_id, time.monotonic() - t0)
    return code


def wait_for_backend(app: Conveyor, first_call: Callable[[], object]) -> None:
    """Make the first backend call, and while the server cannot be reached (a worker started
    before its Redis or PostgreSQL, as in docker compose) keep trying with backoff instead of
    exiting. Any other error (a bad path, bad credentials) ends the worker at once."""
    outage = Outage(f"connecting to {app.safe_url}", log, remind_every=10.0)
    while True:
        try:
            first_call()
        except BackendUnavailable as exc:
            if not app.backend.has_server:  # a file that cannot be opened will not appear
                raise
            time.sleep(outage.failed(exc))
            continue
        outage.ok()
        return


def banner(app: Conveyor, pool: str, n: int, queues: list[str], worker_id: str,
           max_tasks: int | None, scheduler: bool = True) -> None:
    from .. import __version__

    lines = [
        f"conveyor {__version__} worker {worker_id}",
        f"  backend:     {app.safe_url}",
        f"  pool:        {pool}, concurrency {n}"
        + (f", max {max_tasks} tasks per child" if max_tasks else ""),
        f"  queues:      {', '.join(queues)}",
        f"  lease:       {app.lease:g}s",
        f"  tasks ({len(app.tasks)}):",
    ]
    for name, task in sorted(app.tasks.items()):
        opts = [f"queue={task.options.queue}"]
        if task.options.retry.retries:
            opts.append(f"retries={task.options.retry.retries}")
        if task.options.timeout:
            opts.append(f"timeout={task.options.timeout:g}s")
        lines.append(f"    . {name} ({', '.join(opts)})")
    if app.periodic_tasks:
        state = "" if scheduler else " (not scheduled here: --no-scheduler)"
        lines.append(f"  periodic ({len(app.periodic_tasks)}){state}:")
        for name, entry in sorted(app.periodic_tasks.items()):
            lines.append(f"    . {name}: {entry.schedule.describe()}")
    log.info("\n".join(lines))
