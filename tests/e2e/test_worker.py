"""The worker end to end: `python -m conveyor worker` as real processes on SQLite, Redis and
PostgreSQL, real signals and real kills. Each test writes its own `tasks.py`; the producer runs here."""

from __future__ import annotations

import re
import signal
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from conveyor import PENDING, STARTED, TaskFailed
from conveyor import TimeoutError as ConveyorTimeout
from conveyor.backends.base import Message
from conveyor.envelope import Envelope
from servers import ON_EVERY_SERVER_BACKEND

if TYPE_CHECKING:
    from conftest import Project  # the `project` fixture of tests/e2e/conftest.py

pytestmark = [ON_EVERY_SERVER_BACKEND, pytest.mark.timeout(90)]

BASIC = '''
@app.task
def add(a, b):
    return a + b


@app.task
def fail(n):
    raise ValueError(f"boom {n}")


@app.task
def nap(seconds):
    time.sleep(seconds)
    return os.getpid()
'''


def check_basic(tasks: Any) -> None:
    """`tasks` is the producer's copy of the module the worker runs."""
    assert tasks.add.delay(2, 3).get(timeout=20) == 5
    group = tasks.add.map([(i, i) for i in range(10)])
    assert group.get(timeout=20) == [2 * i for i in range(10)]
    with pytest.raises(TaskFailed) as info:
        tasks.fail.delay(7).get(timeout=20)
    err = info.value
    assert err.exc_type == "ValueError"
    assert err.exc_message == "boom 7"
    assert "Traceback" in err.traceback and 'raise ValueError(f"boom {n}")' in err.traceback


# --- 1. basics ----------------------------------------------------------------------------
def test_process_pool_runs_tasks_maps_in_order_and_reports_failures(project: Project) -> None:
    tasks = project.write_tasks(BASIC)
    w = project.worker("-c", "2", "--pool", "process")
    check_basic(tasks)
    assert w.stop() == 0


def test_thread_pool_runs_tasks_maps_in_order_and_reports_failures(project: Project) -> None:
    tasks = project.write_tasks(BASIC)
    w = project.worker("-c", "2", "--pool", "thread")
    check_basic(tasks)
    assert w.stop() == 0


def test_five_children_run_ten_one_second_tasks_in_about_two_seconds(project: Project) -> None:
    tasks = project.write_tasks(BASIC)
    w = project.worker("-c", "5")
    t0 = time.monotonic()
    pids = tasks.nap.map([(1,)] * 10).get(timeout=20)
    elapsed = time.monotonic() - t0
    assert elapsed < 4.0, f"10 x 1 s on -c 5 took {elapsed:.1f}s"
    assert len(pids) == 10
    assert w.stop() == 0


def test_a_warmed_up_worker_does_not_hoard_slow_tasks(project: Project) -> None:
    tasks = project.write_tasks(BASIC)
    a = project.worker("-c", "1")
    # Fast tasks make a slot claim in growing batches; slow ones must not be hoarded that way.
    tasks.add.map([(i, 0) for i in range(40)]).get(timeout=30)
    b = project.worker("-c", "1", "--log-level", "DEBUG")
    b.wait_for_log(r"child 0 started")  # forked, so polling at once
    t0 = time.monotonic()
    group = tasks.nap.map([(1,)] * 4)
    try:
        pids = group.get(timeout=3.5)  # two slots, two each: about 2 s
    except ConveyorTimeout:
        pytest.fail(f"4 x 1 s on two idle slots not done after {time.monotonic() - t0:.1f}s")
    assert len(set(pids)) == 2
    assert a.stop() == 0 and b.stop() == 0


# --- 2. banner and log lines -------------------------------------------------------------
def test_banner_and_one_started_and_one_succeeded_line_per_task(project: Project) -> None:
    tasks = project.write_tasks(BASIC + '''

@app.task(queue="media", retries=2, timeout=30)
def resize(x):
    return x
''')
    w = project.worker("-c", "2")
    banner = w.log()
    for name in ("tasks.add", "tasks.fail", "tasks.nap", "tasks.resize"):
        assert name in banner
    assert "default" in banner and "media" in banner  # the queues it consumes
    assert project.url in banner
    assert "process" in banner and re.search(r"concurrency\D{0,5}2\b", banner)

    results = [tasks.add.delay(i, 1) for i in range(3)] + [tasks.resize.delay("x")]
    for r in results:
        r.get(timeout=20)
    log = w.wait_for_log(r"succeeded in", count=4)
    for r in results:
        lines = [line for line in log.splitlines() if r.id in line]
        assert sum("started" in line for line in lines) == 1, lines
        assert sum("succeeded in" in line for line in lines) == 1, lines
    assert w.stop() == 0


# --- 3. queues ----------------------------------------------------------------------------
def test_worker_consumes_only_the_queues_it_is_given(project: Project) -> None:
    tasks = project.write_tasks('''
@app.task(queue="a")
def on_a():
    record("a")
    return "a"


@app.task(queue="b")
def on_b():
    record("b")
    return "b"
''')
    w = project.worker("-c", "1", "-q", "a")
    rb = tasks.on_b.delay()  # enqueued first: a worker that took queue b would run it first
    ra = tasks.on_a.delay()
    assert ra.get(timeout=20) == "a"
    assert rb.state == PENDING
    assert [line[1:] for line in project.ledger()] == [["a"]]
    assert rb.id not in w.log()
    assert w.stop() == 0
    project.worker("-c", "1", "-q", "b")
    assert rb.get(timeout=20) == "b"


# --- 4. lease extension -------------------------------------------------------------------
def test_a_task_longer_than_its_lease_is_never_taken_by_a_second_worker(
        project: Project) -> None:
    tasks = project.write_tasks('''
@app.task
def long(seconds):
    record("long")
    time.sleep(seconds)
    return os.getpid()
''', lease=2)
    workers = [project.worker("-c", "2"), project.worker("-c", "2")]
    r = tasks.long.delay(5)  # 2.5 leases
    pid = r.get(timeout=30)
    assert project.ledger() == [[str(pid), "long"]]
    assert sum(r.id in w.log() for w in workers) == 1  # one worker ever started it
    for w in workers:
        assert w.stop() == 0


# --- 5. SIGKILL ---------------------------------------------------------------------------
def test_a_task_of_a_sigkilled_worker_runs_again_after_its_lease(project: Project) -> None:
    tasks = project.write_tasks('''
@app.task(bind=True)
def victim(ctx):
    record("victim", ctx.attempt, time.time())
    time.sleep(30 if ctx.attempt == 1 else 0.2)
    return ctx.attempt
''', lease=2)
    a = project.worker("-c", "1")
    r = tasks.victim.delay()
    project.wait_until(project.ledger, what="the first run to start")
    seen = time.monotonic()
    a.kill_group()
    a.wait(10)
    if time.monotonic() - seen < 1.0:  # (a slow machine may be past the 2 s lease already)
        assert r.state == STARTED  # the dead worker's lease still holds it: nothing is lost
    b = project.worker("-c", "1")
    assert r.get(timeout=20) == 2
    runs = project.ledger()
    assert [line[1:3] for line in runs] == [["victim", "1"], ["victim", "2"]]
    assert float(runs[1][3]) - float(runs[0][3]) >= 1.5  # not before the lease ran out
    assert b.stop() == 0


# --- 6. SIGTERM ---------------------------------------------------------------------------
DRAIN = '''
@app.task
def noop():
    return None


@app.task(bind=True)
def job(ctx, seconds):
    record("job", ctx.id, ctx.attempt)
    time.sleep(seconds)
    return ctx.attempt


@app.task(bind=True)
def stubborn(ctx):
    record("stubborn", ctx.attempt)
    if runs("stubborn") == 1:
        time.sleep(60)
    return ctx.attempt
'''


def test_sigterm_finishes_the_running_task_and_leaves_the_queue_alone(
        project: Project) -> None:
    tasks = project.write_tasks(DRAIN, lease=30)
    w = project.worker("-c", "1")
    # Quick tasks just before: the slot claims in batches by then, so the queued tasks below
    # are likely claimed together with the slow one and must be given back, uncounted.
    tasks.noop.map([()] * 40)
    group = tasks.job.map([(2,)] + [(0,)] * 4)
    slow, queued = group[0], list(group)[1:]
    project.wait_until(project.ledger, what="the 2 s task to start")
    t0 = time.monotonic()
    w.signal(signal.SIGTERM)
    assert w.wait(20) == 0
    assert time.monotonic() - t0 < 10  # well before the 30 s lease
    assert slow.get(timeout=1) == 1
    assert len(project.ledger()) == 1  # nothing else started
    for r in queued:
        assert r.state == PENDING
    assert "stopping" in w.log()

    project.worker("-c", "1")
    assert [r.get(timeout=20) for r in queued] == [1, 1, 1, 1]  # first attempts, not retries


@pytest.mark.parametrize("pool", ["process", "thread"])
@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_second_signal_stops_at_once_and_the_task_returns_to_the_queue(
        project: Project, pool: str, second: int) -> None:
    tasks = project.write_tasks(DRAIN, lease=30)
    w = project.worker("-c", "1", "--pool", pool)
    r = tasks.stubborn.delay()
    project.wait_until(project.ledger, what="the task to start")
    w.signal(signal.SIGTERM)
    w.wait_for_log("stopping")
    t0 = time.monotonic()
    w.signal(second)
    assert w.wait(10) == 0
    assert time.monotonic() - t0 < 5
    assert r.state == PENDING  # back in the queue now, not held until the lease runs out
    t1 = time.monotonic()
    project.worker("-c", "1")
    assert r.get(timeout=20) == 1  # given back uncounted: still its first attempt
    assert time.monotonic() - t1 < 15  # far less than the 30 s lease
    assert [line[1] for line in project.ledger()] == ["stubborn", "stubborn"]


@pytest.mark.parametrize("pool", ["process", "thread"])
def test_when_the_grace_period_ends_the_worker_stops_and_gives_the_task_back(
        project: Project, pool: str) -> None:
    tasks = project.write_tasks(DRAIN, lease=30)
    w = project.worker("-c", "1", "--pool", pool, "--grace", "1")
    r = tasks.stubborn.delay()
    project.wait_until(project.ledger, what="the task to start")
    t0 = time.monotonic()
    w.signal(signal.SIGTERM)
    assert w.wait(10) == 0
    assert 0.9 <= time.monotonic() - t0 < 6
    assert r.state == PENDING
    project.worker("-c", "1")
    assert r.get(timeout=20) == 1
    assert len(project.ledger()) == 2


# --- 7. child death -----------------------------------------------------------------------
DEATHS = '''
@app.task(retries=1, retry_delay=0.1)
def exits():
    record("exits")
    os._exit(1)


@app.task(retries=1, retry_delay=0.1)
def segfaults():
    record("segfaults")
    os.kill(os.getpid(), signal.SIGSEGV)
    time.sleep(10)


@app.task(retries=1, retry_delay=0.1)
def oom_killed():
    record("oom_killed")
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(10)


@app.task
def fine():
    return os.getpid()
'''


def test_a_dying_child_is_retried_then_dead_lettered_and_the_pool_survives(
        project: Project) -> None:
    tasks = project.write_tasks(DEATHS)
    w = project.worker("-c", "2")
    results = {name: getattr(tasks, name).delay()
               for name in ("exits", "segfaults", "oom_killed")}
    for name, r in results.items():
        with pytest.raises(TaskFailed) as info:
            r.get(timeout=30)
        assert info.value.exc_type == "WorkerLost", (name, info.value)
        assert [line[1] for line in project.ledger()].count(name) == 2  # retried once
    dead = {d.id: d.reason for d in tasks.app.backend.dead_letters()}
    assert set(dead) == {r.id for r in results.values()}
    for reason in dead.values():
        assert "worker lost" in reason.lower()
    assert "SIGSEGV" in dead[results["segfaults"].id]
    assert "SIGKILL" in dead[results["oom_killed"].id]
    assert "code 1" in dead[results["exits"].id]
    assert isinstance(tasks.fine.delay().get(timeout=20), int)
    assert w.stop() == 0


MEMORY = '''
import resource


@app.task(retries=1, retry_delay=0.1)
def blows_up():
    """Grows until the address-space limit (set here, in this pool child) stops it."""
    record("blows_up")
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        with open("/proc/self/status") as f:
            vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
        resource.setrlimit(resource.RLIMIT_AS, (vm + 300 * 1024 * 1024, hard))
    hog = []
    while True:
        hog.append(bytearray(16 * 1024 * 1024))


@app.task
def fine():
    return os.getpid()
'''


def test_a_memory_blow_up_fails_the_task_and_the_pool_goes_on(project: Project) -> None:
    """A task that eats memory until its process's limit stops it: MemoryError, retried, then
    dead-lettered; the same pool keeps serving. (When the kernel's OOM killer ends the child
    instead, that is the SIGKILL case above: `worker lost`.)"""
    tasks = project.write_tasks(MEMORY)
    w = project.worker("-c", "1")
    r = tasks.blows_up.delay()
    with pytest.raises(TaskFailed) as info:
        r.get(timeout=60)
    assert info.value.exc_type == "MemoryError", info.value
    assert [line[1] for line in project.ledger()].count("blows_up") == 2
    dead = {d.id: d.reason for d in tasks.app.backend.dead_letters()}
    assert "MemoryError" in dead[r.id]
    assert isinstance(tasks.fine.delay().get(timeout=20), int)
    assert w.stop() == 0


# --- 8. max tasks per child ---------------------------------------------------------------
def test_children_are_replaced_after_max_tasks(project: Project) -> None:
    tasks = project.write_tasks(BASIC)
    w = project.worker("-c", "1", "--max-tasks-per-child", "2")
    pids = [tasks.nap.delay(0).get(timeout=20) for _ in range(6)]
    assert len(set(pids)) >= 3, pids
    assert pids[0] == pids[1]  # replaced after two, not after each
    assert "died" not in w.log()
    assert w.stop() == 0


@pytest.mark.parametrize("pool", ["thread", "async"])
def test_max_tasks_per_child_is_said_to_be_ignored_by_single_process_pools(
        project: Project, pool: str) -> None:
    tasks = project.write_tasks(BASIC)
    w = project.worker("-c", "1", "--pool", pool, "--max-tasks-per-child", "2")
    assert [tasks.nap.delay(0).get(timeout=20) for _ in range(3)] == [w.pid] * 3
    assert f"the {pool} pool runs in this one process, so it is ignored" in w.log()
    assert "tasks per child" not in w.log()
    assert w.stop() == 0


# --- 9. time limits -----------------------------------------------------------------------
TIMEOUTS = '''
@app.task(timeout=1, retries=1, retry_delay=0.1)
def slow(seconds):
    record("slow")
    time.sleep(seconds)
    return "finished"


@app.task
def pid():
    return os.getpid()
'''


def test_process_pool_kills_a_task_past_its_timeout_and_replaces_the_child(
        project: Project) -> None:
    tasks = project.write_tasks(TIMEOUTS)
    w = project.worker("-c", "1")
    first = tasks.pid.delay().get(timeout=20)
    t0 = time.monotonic()
    with pytest.raises(TaskFailed) as info:
        tasks.slow.delay(30).get(timeout=20)
    elapsed = time.monotonic() - t0
    assert info.value.exc_type == "TaskTimeout"
    assert 2.0 <= elapsed < 8, elapsed  # two attempts of about 1 s each
    runs = project.ledger()
    assert [line[1] for line in runs] == ["slow", "slow"]
    after = tasks.pid.delay().get(timeout=20)
    assert after not in {first, *(int(line[0]) for line in runs)}  # a new child
    assert w.stop() == 0


def test_thread_pool_settles_a_task_past_its_timeout_once(project: Project) -> None:
    tasks = project.write_tasks(TIMEOUTS)
    w = project.worker("-c", "2", "--pool", "thread")
    t0 = time.monotonic()
    r = tasks.slow.apply_async((4,), retries=0)
    with pytest.raises(TaskFailed) as info:
        r.get(timeout=20)
    assert time.monotonic() - t0 < 3.5  # settled at the limit, not when the thread returned
    assert info.value.exc_type == "TaskTimeout"
    assert tasks.pid.delay().get(timeout=20) == w.pid  # the pool still serves
    # The thread returns after 4 s; its late success must not replace the recorded timeout.
    w.wait_for_log(rf"{r.id}\].*discarded")
    with pytest.raises(TaskFailed) as again:
        r.get(timeout=1)
    assert again.value.exc_type == "TaskTimeout"
    assert len(project.ledger()) == 1
    assert w.stop() == 0


# --- 10. bad messages ---------------------------------------------------------------------
def test_unknown_tasks_and_garbage_go_to_the_dead_letters_and_the_worker_goes_on(
        project: Project) -> None:
    tasks = project.write_tasks(BASIC)
    app = tasks.app
    unknown = Envelope(id=uuid.uuid4().hex, task="tasks.nobody_knows_me", args=[1])
    now = app.clock.now()
    garbage_id = uuid.uuid4().hex
    app.backend.enqueue([Message(unknown.id, "default", app.codec.encode(unknown.to_dict()),
                                 0, now),
                         Message(garbage_id, "default", b"\x00\xff not a message {", 0, now)],
                        now)
    good = tasks.add.delay(20, 22)
    w = project.worker("-c", "1")
    assert good.get(timeout=20) == 42
    dead = {d.id: d.reason for d in app.backend.dead_letters()}
    assert set(dead) == {unknown.id, garbage_id}
    assert "unknown task" in dead[unknown.id] and "tasks.nobody_knows_me" in dead[unknown.id]
    assert "undecodable" in dead[garbage_id]
    assert w.proc.poll() is None
    assert w.stop() == 0
