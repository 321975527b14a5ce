"""Task limits with real workers, on SQLite, Redis and PostgreSQL: a rate limit holds across
two worker processes (and an unlimited task is not held up behind it), a concurrency limit
holds across two workers (also per `concurrency_key`), and a soft timeout lets the task clean
up before the hard one."""

from __future__ import annotations

import collections
import time
from typing import TYPE_CHECKING

import pytest

from servers import ON_EVERY_SERVER_BACKEND

if TYPE_CHECKING:
    from conftest import Project

pytestmark = ON_EVERY_SERVER_BACKEND

TASKS = '''
from conveyor import TaskTimeout


@app.task(rate_limit="10/s")
def limited(i):
    record("limited", i, repr(time.time()))


@app.task
def free():
    record("free", repr(time.time()))


@app.task(concurrency=2)
def slow(i):
    record("start", i, repr(time.time()))
    time.sleep(0.25)
    record("end", i, repr(time.time()))


@app.task(concurrency=1, concurrency_key=lambda args, kwargs: args[0])
def per_customer(customer, i):
    record("start", customer + str(i), repr(time.time()))
    time.sleep(0.25)
    record("end", customer + str(i), repr(time.time()))


@app.task(soft_timeout=0.5, timeout=5)
def sleepy():
    try:
        time.sleep(10)
    except TaskTimeout:
        record("cleanup", repr(time.time()))
        raise


@app.task(soft_timeout=0.3, timeout=3, bind=True)
def busy(ctx):
    try:
        while True:  # Python code between short sleeps: where a thread can be interrupted
            time.sleep(0.02)
    except TaskTimeout:
        record("cleanup", repr(ctx.cancelled))
        raise


@app.task(timeout=0.5)
def runaway():
    try:
        while True:
            time.sleep(0.02)
    finally:
        record("stopped", repr(time.time()))
'''


def max_overlap(spans: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def spans(project: Project, prefix: str = "") -> list[tuple[float, float]]:
    starts: dict[str, float] = {}
    out = []
    for line in project.ledger():
        kind, tag, when = line[1], line[2], float(line[3])
        if not tag.startswith(prefix):
            continue
        if kind == "start":
            starts[tag] = when
        elif kind == "end":
            out.append((starts.pop(tag), when))
    return out


def test_a_rate_limit_holds_across_workers_without_blocking_others(project: Project) -> None:
    tasks = project.write_tasks(TASKS)
    project.worker("-c", "2")
    project.worker("-c", "2")
    # Start early in a second, so that no window boundary falls between a task's admission
    # and the timestamp it writes (the check below counts starts per aligned second).
    time.sleep(1.1 - time.time() % 1)
    t0 = time.time()
    group = tasks.limited.map([(i,) for i in range(30)])
    free = tasks.free.delay()
    free.get(timeout=10)
    group.get(timeout=15)
    starts = sorted(float(line[3]) for line in project.ledger() if line[1] == "limited")
    (free_at,) = (float(line[2]) for line in project.ledger() if line[1] == "free")
    assert len(starts) == 30
    per_window = collections.Counter(int(s) for s in starts)
    assert max(per_window.values()) <= 10, per_window
    assert starts[-1] - t0 >= 1.8, "30 starts at 10/s take about 2 s at least"
    assert starts[-1] - t0 < 4.5, "the limit does not slow them down more than it must"
    assert free_at - t0 < 1.0 and free_at < starts[20], "the unlimited task ran at once"


def test_a_concurrency_limit_holds_across_workers(project: Project) -> None:
    tasks = project.write_tasks(TASKS)
    project.worker("-c", "4")
    project.worker("-c", "4")
    t0 = time.monotonic()
    tasks.slow.map([(i,) for i in range(8)]).get(timeout=20)
    took = time.monotonic() - t0
    done = spans(project)
    assert len(done) == 8
    assert max_overlap(done) == 2, done
    assert took < 5, f"8 x 0.25 s two at a time took {took:.1f}s"


def test_a_concurrency_limit_per_customer(project: Project) -> None:
    tasks = project.write_tasks(TASKS)
    project.worker("-c", "4")
    project.worker("-c", "4")
    tasks.per_customer.map([(c, i) for i in range(3) for c in ("a", "b")]).get(timeout=20)
    a, b = spans(project, "a"), spans(project, "b")
    assert len(a) == len(b) == 3
    assert max_overlap(a) == 1 and max_overlap(b) == 1, (a, b)
    assert max_overlap(a + b) == 2, "different customers run at the same time"


def test_a_soft_timeout_lets_the_task_clean_up(project: Project) -> None:
    from conveyor import TaskFailed

    tasks = project.write_tasks(TASKS)
    project.worker("-c", "1")
    t0 = time.time()
    with pytest.raises(TaskFailed) as failed:
        tasks.sleepy.delay().get(timeout=10)
    assert failed.value.exc_type == "TaskTimeout"
    assert "soft timeout of 0.5s" in failed.value.exc_message
    (cleanup,) = (float(line[2]) for line in project.ledger() if line[1] == "cleanup")
    assert 0.4 < cleanup - t0 < 3


def test_thread_pool_soft_and_hard_limits_interrupt_python_code(project: Project) -> None:
    from conveyor import TaskFailed

    tasks = project.write_tasks(TASKS)
    project.worker("-c", "2", "--pool", "thread")
    with pytest.raises(TaskFailed) as soft:
        tasks.busy.delay().get(timeout=10)
    assert soft.value.exc_type == "TaskTimeout" and "soft timeout" in soft.value.exc_message
    assert ["cleanup", "True"] in [line[1:] for line in project.ledger()]
    t0 = time.time()
    with pytest.raises(TaskFailed) as hard:
        tasks.runaway.delay().get(timeout=10)
    assert hard.value.exc_type == "TaskTimeout"
    # Best effort: the thread ran Python code, so the injected TaskTimeout stopped it too.
    stopped = project.wait_until(lambda: [float(line[2]) for line in project.ledger()
                                          if line[1] == "stopped"], "the runaway thread stops")
    assert stopped[0] - t0 < 2
