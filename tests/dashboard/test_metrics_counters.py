"""Task counters end to end: workers count outcomes, run times and lease losses into the
backend; the Inspector (`counters`, `activity`) and /metrics read them back. On every backend
with the thread pool in this process, and on SQLite with real process-pool workers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor, Reject
from conveyor.backends.base import Ack, Release
from conveyor.backends.memory import MemoryBackend
from conveyor.dashboard import create_app
from conveyor.inspect import Inspector
from conveyor.stats import DURATION_BUCKETS, OUTCOMES, bucket_index
from conveyor.worker.executor import Finished
from conveyor.worker.pools import ThreadHost
from conveyor.worker.stats import Stats

from .conftest import backend_url, local_client

SAMPLE = re.compile(r"^([a-z_]+)(\{[^}]*\})? (\S+)$")


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text -> {(name, labels): value}; checks every sample has HELP and TYPE."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("#") or not line:
            continue
        m = SAMPLE.match(line)
        assert m, line
        name, labels, value = m.groups()
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or family in typed, f"{name} has no TYPE line"
        pairs = frozenset(re.findall(r'(\w+)="([^"]*)"', labels or ""))
        out[(name, pairs)] = float(value)
    return out


def sample(metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
           **labels: str) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


def make_app(url: str) -> Conveyor:
    app = Conveyor(url, lease=5)

    @app.task(name="ok")
    def ok(x: int) -> int:
        return x

    @app.task(name="slow")
    def slow() -> None:
        time.sleep(0.06)

    @app.task(name="flaky", retries=2, retry_delay=0)
    def flaky(key: str) -> str:
        tried = app.backend.incr(f"test:{key}", 1, 600, app.clock.now())
        if tried < 3:
            raise OSError(f"try {tried}")
        return "third time"

    @app.task(name="boom")
    def boom() -> None:
        raise ValueError("bad")

    @app.task(name="reject")
    def reject() -> None:
        raise Reject("not today")

    return app


@pytest.fixture(params=["memory", "sqlite", "redis", "postgres"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Conveyor]:
    a = make_app(backend_url(request.param, tmp_path, request))
    yield a
    a.close()


def run_thread_pool(app: Conveyor, results: list[Any]) -> None:
    """A thread-pool worker in this process until every result is in; stopping it sends the
    last counts."""
    host = ThreadHost(app, concurrency=2, queues=None, worker_id="test", grace=5)
    runner = threading.Thread(target=host.run, daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while not all(r.ready() for r in results):
            assert time.monotonic() < deadline, "tasks did not finish"
            time.sleep(0.02)
    finally:
        host.stop.set()
        runner.join(20)
    assert not runner.is_alive()


def test_counts_after_known_outcomes(app: Conveyor) -> None:
    tasks = app.tasks
    results = [tasks["ok"].delay(i) for i in range(5)]
    results.append(tasks["slow"].delay())
    results.append(tasks["flaky"].delay("f1"))
    results.append(tasks["boom"].delay())
    results.append(tasks["reject"].delay())
    results.append(tasks["ok"].apply_async((1,), expires=-1))  # expired before it starts
    run_thread_pool(app, results)

    c = Inspector(app).counters()
    by_task = {t.task: t for t in c.tasks}
    assert set(by_task) == {"boom", "flaky", "ok", "reject", "slow"}  # no "other"
    expect = {("ok", "succeeded"): 5, ("ok", "expired"): 1, ("slow", "succeeded"): 1,
              ("flaky", "retried"): 2, ("flaky", "succeeded"): 1, ("boom", "failed"): 1,
              ("reject", "rejected"): 1}
    for name, t in by_task.items():
        assert set(t.outcomes) == set(OUTCOMES)
        for outcome, n in t.outcomes.items():
            assert n == expect.get((name, outcome), 0), (name, outcome)
        assert t.lease_losses == 0
    assert c.retries == 2 and c.total("succeeded") == 7 and c.lease_losses == 0
    # The histogram: every run that ran (not the expired one), the slow one past 50 ms.
    assert by_task["ok"].duration_count == 5
    assert by_task["flaky"].duration_count == 3
    slow = by_task["slow"]
    assert slow.duration_count == 1 and slow.duration_sum >= 0.06
    assert dict(slow.buckets)[0.05] == 0 and dict(slow.buckets)[float("inf")] == 1
    assert [le for le, _ in slow.buckets] == [*DURATION_BUCKETS, float("inf")]

    # The overview's charts: this minute (or the one before, at a boundary) has it all.
    minutes = Inspector(app).activity(3)
    assert len(minutes) == 3 and minutes[-1].start <= time.time() < minutes[-1].start + 60
    assert [m.start for m in minutes] == sorted(m.start for m in minutes)
    assert sum(m.succeeded for m in minutes) == 7
    assert sum(m.retried for m in minutes) == 2
    assert sum(m.failed for m in minutes) == 1
    assert sum(m.dead for m in minutes) == 1  # the rejected one

    with local_client(create_app(app)) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    m = parse(response.text)
    assert sample(m, "conveyor_tasks_total", task="ok", outcome="succeeded") == 5
    assert sample(m, "conveyor_tasks_total", task="ok", outcome="expired") == 1
    assert sample(m, "conveyor_tasks_total", task="flaky", outcome="retried") == 2
    assert sample(m, "conveyor_tasks_total", task="boom", outcome="failed") == 1
    assert sample(m, "conveyor_tasks_total", task="reject", outcome="rejected") == 1
    assert sample(m, "conveyor_retries_total", task="flaky") == 2
    assert sample(m, "conveyor_lease_losses_total", task="ok") == 0
    assert sample(m, "conveyor_task_duration_seconds_count", task="slow") == 1
    assert sample(m, "conveyor_task_duration_seconds_bucket", task="slow", le="+Inf") == 1
    assert sample(m, "conveyor_task_duration_seconds_bucket", task="slow", le="0.05") == 0
    assert sample(m, "conveyor_task_duration_seconds_sum", task="slow") >= 0.06
    assert sample(m, "conveyor_dead_letters") == 2  # the gauges are still there
    assert "# TYPE conveyor_task_duration_seconds histogram" in response.text


def test_tasks_this_app_does_not_know_are_other(app: Conveyor) -> None:
    results = [app.tasks["ok"].delay(1), app.tasks["boom"].delay()]
    run_thread_pool(app, results)
    reader = Conveyor(app.url)  # the dashboard of an app that registers only "ok"
    reader._backend = app.backend  # memory:// lives in its app: share it (and close it once)
    reader.task(name="ok")(lambda x: x)
    c = Inspector(reader).counters()
    assert [t.task for t in c.tasks] == ["ok", "other"]
    by_task = {t.task: t for t in c.tasks}
    assert by_task["ok"].outcomes["succeeded"] == 1
    assert by_task["other"].outcomes["failed"] == 1
    assert by_task["other"].duration_count == 1


def test_a_thread_pool_time_limit_is_a_failure_not_a_lease_loss() -> None:
    app = Conveyor("memory://", lease=5)
    gone = threading.Event()

    @app.task(name="sleepy", timeout=0.2)
    def sleepy() -> None:
        gone.wait(1)  # a thread cannot be stopped: its late settle is refused

    results = [sleepy.delay()]
    run_thread_pool(app, results)
    [t] = Inspector(app).counters().tasks
    assert t.outcomes["failed"] == 1 and t.lease_losses == 0
    assert sum(t.outcomes.values()) == 1
    app.close()


# --- the recorder on its own ---------------------------------------------------------------
class Flaky(MemoryBackend):
    """A memory backend whose counters fail while `down` is set."""

    down = False

    def incr_many(self, increments: Sequence[tuple[str, int, float]], now: float) -> None:
        if self.down:
            raise ConnectionError("backend down")
        super().incr_many(increments, now)


class Done:
    def __init__(self, fin: Finished, name: str, seconds: float) -> None:
        self.fin, self.name, self.seconds = fin, name, seconds


def test_lease_losses_and_an_outage(caplog: pytest.LogCaptureFixture) -> None:
    app = Conveyor("memory://")
    backend = Flaky()
    stats = Stats(app, backend, interval=60)
    ok = Done(Finished(Ack("a", "t"), "succeeded"), "t1", 0.002)
    retry = Done(Finished(Release("b", "t", 0.0), "retry"), "t1", 0.3)
    unstarted = Done(Finished(Release("c", "t", 0.0, attempted=False), "deferred"), "t1", 0.0)
    stats.settled([ok, retry, unstarted, ok], [True, True, True, False])
    backend.down = True
    with caplog.at_level("ERROR", "conveyor.worker"):
        assert stats.flush() is False
        assert stats.flush() is False  # the counts are kept, and the outage logged once
    assert len([r for r in caplog.records if "task counts" in r.getMessage()]) == 1
    stats.settled([ok], [True])
    backend.down = False
    assert stats.flush() is True
    assert stats.flush() is True  # nothing left: no backend call

    app._backend = backend  # the Inspector reads this backend
    c = {t.task: t for t in Inspector(app).counters().tasks}["other"]  # t1 is not registered
    assert c.outcomes["succeeded"] == 2 and c.outcomes["retried"] == 1
    assert c.lease_losses == 1 and c.retries == 1
    assert c.duration_count == 3
    assert c.buckets[bucket_index(0.002)][1] == 2
    assert abs(c.duration_sum - 0.304) < 1e-6


# --- real process-pool workers ---------------------------------------------------------------
TASKS = '''
import time
from conveyor import Conveyor

app = Conveyor({url!r}, lease=5)


@app.task(name="ok")
def ok(x):
    return x


@app.task(name="boom")
def boom():
    raise ValueError("bad")
'''


def test_process_pool_workers_count_through_the_backend(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    (tmp_path / "tasks.py").write_text(textwrap.dedent(TASKS.format(url=url)))
    app = Conveyor(url, lease=5)
    ok = app.task(name="ok")(lambda x: x)
    boom = app.task(name="boom")(lambda: None)
    results = [ok.delay(i) for i in range(20)] + [boom.delay()]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    with open(tmp_path / "worker.err", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "conveyor", "worker", "tasks:app",
                                 "-c", "2", "--pool", "process"], cwd=tmp_path, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)
    try:
        for r in results[:-1]:
            r.get(timeout=30)
        # The children send their counts within about a second, while they run.
        deadline = time.monotonic() + 15
        while True:
            c = {t.task: t for t in Inspector(app).counters().tasks}
            if ("ok" in c and c["ok"].outcomes["succeeded"] == 20
                    and "boom" in c and c["boom"].outcomes["failed"] == 1):
                break
            assert time.monotonic() < deadline, (c, (tmp_path / "worker.err").read_text())
            time.sleep(0.1)
        assert sum(m.succeeded for m in Inspector(app).activity(2)) == 20
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        app.close()
    assert c["ok"].duration_count == 20 and c["ok"].lease_losses == 0
