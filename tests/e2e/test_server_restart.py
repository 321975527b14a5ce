"""A Redis or PostgreSQL restart in the middle of a run, on servers this test starts itself.

While the server is down, producers get `BackendUnavailable` (URL shown, password hidden)
within the configured timeout, never a hang; the worker logs the outage, backs off, reconnects
and goes on without being restarted; and with a durable server every enqueue that returned
runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from conveyor import BackendUnavailable, ResultGroup
from own_servers import OwnPostgres, OwnRedis

if TYPE_CHECKING:
    from conftest import Project

pytestmark = pytest.mark.timeout(180)

PASSWORD = "s3cret-pw"
TASKS = '''
@app.task
def job(n):
    record("job", n)
    return n
'''


class Server:
    """The own server of one backend kind, behind one interface."""

    def __init__(self, kind: str, root: Path) -> None:
        self.kind = kind
        self.own: OwnRedis | OwnPostgres
        if kind == "redis":
            self.own = OwnRedis(root / "redis", password=PASSWORD)
        else:
            self.own = OwnPostgres()
        self.own.start()

    @property
    def url(self) -> str:
        if isinstance(self.own, OwnRedis):
            return self.own.url + "?timeout=1&prefix=restart"
        return self.own.url.replace("postgres@", f"postgres:{PASSWORD}@") + "?timeout=1"

    def close(self) -> None:
        if isinstance(self.own, OwnRedis):
            self.own.stop()
        else:
            self.own.remove()


@pytest.fixture(params=["redis", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    s = Server(request.param, tmp_path)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def backend_url(server: Server) -> str:
    """The `project` fixture's backend: this test's own server."""
    return server.url


class Producer(threading.Thread):
    """Enqueues `job(n)` every few milliseconds until stopped, remembering what returned and
    what failed, and how long each failing call took."""

    def __init__(self, task: Any) -> None:
        super().__init__(daemon=True)
        self.task = task
        self.stop = threading.Event()
        self.returned: list[Any] = []
        self.errors: list[tuple[float, BackendUnavailable]] = []
        self.other: list[BaseException] = []

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                self.returned.append(self.task.delay(n))
            except BackendUnavailable as exc:
                self.errors.append((time.monotonic() - t0, exc))
                time.sleep(0.05)
                continue
            except BaseException as exc:  # anything else fails the test below
                self.other.append(exc)
                return
            n += 1
            time.sleep(0.004)


def test_producers_and_workers_ride_out_a_server_restart(server: Server,
                                                          project: Project) -> None:
    tasks = project.write_tasks(TASKS, lease=10)
    worker = project.worker("-c", "2")
    assert tasks.job.delay(-1).get(timeout=30) == -1

    producer = Producer(tasks.job)
    producer.start()
    time.sleep(1.5)
    server.own.restart(down_for=2.5, crash=True)  # SIGKILL / immediate shutdown
    time.sleep(2.0)
    producer.stop.set()
    producer.join(30)

    assert not producer.other, producer.other
    assert producer.errors, "the producer never noticed the server was down"
    slowest = max(seconds for seconds, _ in producer.errors)
    assert slowest < 3.0, f"a call hung {slowest:.1f}s past its 1s timeout"
    text = str(producer.errors[0][1])
    assert PASSWORD not in text and "***" in text and str(server.own.port) in text, text

    returned = producer.returned
    assert len(returned) > 100
    group = ResultGroup(tasks.app, returned)
    assert group.get(timeout=60) == list(range(len(returned)))
    ran = {int(f[2]) for f in project.ledger() if f[1] == "job"}
    assert not [n for n in range(len(returned)) if n not in ran], "lost enqueues"

    assert worker.proc.poll() is None, "the worker must survive without a restart"
    log = worker.log()
    assert "works again" in log, log[-3000:]
    assert PASSWORD not in log
    assert worker.stop() == 0
