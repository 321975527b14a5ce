"""Progress reports, revocation and `expires` with real workers on SQLite, Redis and
PostgreSQL (docs/control.md): a waiting `get(on_progress=...)` sees each report; a revoked
queued task never runs, across a worker restart; `revoke(terminate=True)` stops a running
task on the process pool (its child is replaced) and on the thread pool (`ctx.cancelled`),
and the pool goes on; tasks not started in time are dropped."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from conveyor import PROGRESS, REVOKED, TaskFailed, TaskRevoked
from servers import ON_EVERY_SERVER_BACKEND

if TYPE_CHECKING:
    from conftest import Project  # the `project` fixture of tests/e2e/conftest.py

pytestmark = [ON_EVERY_SERVER_BACKEND, pytest.mark.timeout(90)]

TASKS = '''
HERE = os.path.dirname(LEDGER)


@app.task
def mark(tag):
    record(tag)
    return tag


@app.task(bind=True)
def steps(ctx, tag, n):
    """Report n steps; after each, wait until the producer says it saw it (a file)."""
    for i in range(1, n + 1):
        ctx.progress(i, n, tag=tag)
        deadline = time.time() + 15
        while not os.path.exists(os.path.join(HERE, f"{tag}-{i}")) and time.time() < deadline:
            time.sleep(0.02)
    return os.getpid()


@app.task(bind=True)
def spin(ctx, tag):
    record(tag, "started")
    deadline = time.time() + 30
    while not ctx.cancelled and time.time() < deadline:
        time.sleep(0.02)
    record(tag, "cancelled" if ctx.cancelled else "ran-out")
    return "finished"


@app.task
def whoami():
    return os.getpid()


@app.task
def nap(seconds):
    time.sleep(seconds)


@app.task(retries=1, retry_delay=1.5)
def flaky(tag):
    record(tag)
    if runs(tag) == 1:
        raise OSError("the first try fails")
    return "second try"
'''


def tag(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def lines(project: Project, t: str) -> list[list[str]]:
    return [line for line in project.ledger() if t in line[1:]]


@pytest.mark.parametrize("pool", ["process", "thread"])
def test_a_waiting_get_sees_each_progress_report(project: Project, pool: str) -> None:
    tasks = project.write_tasks(TASKS)
    project.worker("-c", "1", "--pool", pool)
    t = tag("steps")
    r = tasks.steps.delay(t, 3)
    seen: list[tuple[dict[str, Any], str, Any]] = []

    def on_progress(report: dict[str, Any]) -> None:
        seen.append((report, r.state, r.progress))
        Path(project.root, f"{t}-{report['current']}").touch()  # the task may go on

    assert isinstance(r.get(timeout=30, on_progress=on_progress), int)
    assert [s[0] for s in seen] == [{"current": i, "total": 3, "tag": t} for i in (1, 2, 3)]
    assert all(state == PROGRESS and progress == report for report, state, progress in seen)
    assert r.progress is None and r.state == "SUCCESS"


def test_a_revoked_queued_task_never_runs_across_a_worker_restart(project: Project) -> None:
    tasks = project.write_tasks(TASKS)
    first = project.worker("-c", "1")
    assert tasks.mark.delay("warm").get(timeout=20) == "warm"  # it runs (and handles SIGTERM)
    later, queued = tag("later"), tag("queued")
    start = time.monotonic()
    r_later = tasks.mark.apply_async((later,), countdown=1.5)
    assert r_later.revoke() is True
    assert first.stop() == 0
    r_queued = tasks.mark.delay(queued)  # nobody runs: it waits in the queue
    assert r_queued.state == "PENDING"
    assert r_queued.revoke() is True
    assert r_queued.revoke() is False  # once is enough
    project.worker("-c", "1")  # a fresh worker knows only what the backend says
    time.sleep(max(0.0, start + 2.0 - time.monotonic()))  # past the countdown
    after = tag("after")
    assert tasks.mark.delay(after).get(timeout=20) == after
    assert lines(project, later) == [] and lines(project, queued) == []
    for r in (r_later, r_queued):
        assert r.state == REVOKED and r.ready()
        with pytest.raises(TaskRevoked):
            r.get(timeout=5)
        failure = r.get(timeout=5, propagate=False)
        assert isinstance(failure, TaskFailed) and failure.exc_type == "TaskRevoked"
    done = tasks.mark.delay(tag("done"))
    done.get(timeout=20)
    assert done.revoke() is False  # finished: nothing to do


@pytest.mark.parametrize("pool", ["process", "thread"])
def test_terminate_stops_a_running_task_and_the_pool_goes_on(project: Project,
                                                             pool: str) -> None:
    tasks = project.write_tasks(TASKS)
    project.worker("-c", "1", "--pool", pool)
    before = tasks.whoami.delay().get(timeout=20)
    t = tag("spin")
    r = tasks.spin.delay(t)
    project.wait_until(lambda: lines(project, t), "the task to start")
    assert r.revoke(terminate=True) is True
    asked = time.monotonic()
    with pytest.raises(TaskRevoked) as info:
        r.get(timeout=20)
    assert time.monotonic() - asked < 5, "a running task is stopped within a few seconds"
    assert "terminate" in info.value.exc_message
    assert r.state == REVOKED
    after = tasks.whoami.delay().get(timeout=20)  # the pool runs the next task
    if pool == "process":  # its child was killed and replaced
        assert after != before
        time.sleep(0.3)
        assert [line[2] for line in lines(project, t)] == ["started"]
    else:  # the task saw ctx.cancelled and returned; its outcome is REVOKED all the same
        assert after == before
        project.wait_until(lambda: len(lines(project, t)) == 2, "the task to return")
        assert [line[2] for line in lines(project, t)] == ["started", "cancelled"]
    assert tasks.mark.delay("next").get(timeout=20) == "next"


def test_tasks_not_started_in_time_are_dropped(project: Project) -> None:
    tasks = project.write_tasks(TASKS)
    project.worker("-c", "1")
    scheduled, behind, retried = tag("scheduled"), tag("behind"), tag("retried")
    r_scheduled = tasks.mark.apply_async((scheduled,), countdown=0.5, expires=0.2)
    busy = tasks.nap.delay(1.5)  # the only slot is busy past the next one's expiry
    time.sleep(0.3)
    r_behind = tasks.mark.apply_async((behind,), expires=0.5)
    busy.get(timeout=20)
    # Started before it expired: its retry, due after the expiry, runs on (docs/control.md).
    r_retried = tasks.flaky.apply_async((retried,), expires=1.0)
    for r in (r_scheduled, r_behind):
        with pytest.raises(TaskRevoked) as info:
            r.get(timeout=20)
        assert info.value.exc_type == "TaskExpired" and r.state == REVOKED
    assert lines(project, scheduled) == [] and lines(project, behind) == []
    assert r_retried.get(timeout=20) == "second try"
    assert len(lines(project, retried)) == 2
