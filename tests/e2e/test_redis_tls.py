"""rediss://: a worker and a producer talk to a Redis that only speaks TLS (a server this test
starts with a certificate it makes), verifying the server against that certificate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from conveyor import BackendUnavailable, Conveyor
from own_servers import OwnRedis

if TYPE_CHECKING:
    from conftest import Project

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path / "redis-tls", password="tls-pw", tls=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def backend_url(tls_redis: OwnRedis) -> str:
    return tls_redis.url + "&prefix=tls"


def test_a_worker_runs_tasks_over_tls(project: Project, tls_redis: OwnRedis) -> None:
    tasks = project.write_tasks('''
@app.task
def add(a, b):
    return a + b
''')
    worker = project.worker("-c", "2")
    assert tasks.add.delay(2, 3).get(timeout=30) == 5
    assert tasks.add.map([(i, i) for i in range(20)]).get(timeout=30) == [2 * i for i in range(20)]
    assert "tls-pw" not in worker.log()
    assert worker.stop() == 0


def test_plain_redis_against_a_tls_port_is_unavailable(tls_redis: OwnRedis) -> None:
    app = Conveyor(f"redis://:tls-pw@127.0.0.1:{tls_redis.port}/0?timeout=1")

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    with pytest.raises(BackendUnavailable) as info:
        add.delay(1, 2)
    assert "tls-pw" not in str(info.value)
