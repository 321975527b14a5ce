"""`--pool async` end to end: real worker processes on SQLite, Redis and PostgreSQL running
`async def` tasks on one event loop (and plain functions in threads beside it)."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import TYPE_CHECKING

import pytest

from conveyor import REVOKED, TaskFailed
from servers import ON_EVERY_SERVER_BACKEND

if TYPE_CHECKING:
    from conftest import Project

pytestmark = [ON_EVERY_SERVER_BACKEND, pytest.mark.timeout(60)]

TASKS = '''
import asyncio
import threading

from conveyor import TaskTimeout


@app.task
async def snooze(seconds, tag=""):
    await asyncio.sleep(seconds)
    if tag:
        record(tag)
    return threading.current_thread().name


@app.task
def plain(a, b):
    time.sleep(0.1)
    return [a + b, threading.current_thread().name]


@app.task(timeout=0.5, retries=1, retry_delay=0)
async def stuck():
    record("stuck-start")
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        record("stuck-cancelled")
        raise


@app.task(timeout=0.5)
def blocking():
    time.sleep(8)  # in C: a thread cannot be stopped here


@app.task(soft_timeout=0.3, timeout=10)
async def careful():
    try:
        await asyncio.sleep(30)
    finally:
        record("careful-cleanup")


@app.task
async def forever():
    record("forever-start")
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        record("forever-cancelled")
        raise
'''


def test_fifty_sleeping_coroutines_share_one_loop(project: Project) -> None:
    tasks = project.write_tasks(TASKS)
    w = project.worker("--pool", "async", "-c", "50")
    tasks.snooze.delay(0).get(timeout=20)  # warm: connections and the loop are up
    t0 = time.monotonic()
    names = tasks.snooze.map([(0.5,)] * 50).get(timeout=20)
    elapsed = time.monotonic() - t0
    assert elapsed < 2.5, f"50 x 0.5 s on one loop with -c 50 took {elapsed:.2f}s"
    assert set(names) == {"MainThread"}  # coroutines on the worker's loop, not in threads
    assert "pool:        async, concurrency 50" in w.log()
    assert w.stop() == 0


def test_plain_function_runs_in_a_thread_beside_the_loop(project: Project) -> None:
    tasks = project.write_tasks(TASKS)
    w = project.worker("--pool", "async", "-c", "4")
    value, thread = tasks.plain.delay(2, 3).get(timeout=20)
    assert value == 5 and thread.startswith("conveyor-sync")
    assert w.stop() == 0


def test_timeout_cancels_the_coroutine_and_retries(project: Project) -> None:
    tasks = project.write_tasks(TASKS)
    w = project.worker("--pool", "async", "-c", "4")
    with pytest.raises(TaskFailed) as info:
        tasks.stuck.delay().get(timeout=20)
    assert info.value.exc_type == "TaskTimeout"
    lines = [line[1] for line in project.ledger()]
    assert lines.count("stuck-start") == 2  # retries=1: a second attempt
    assert lines.count("stuck-cancelled") == 2  # each attempt was cancelled, not left running
    assert w.stop() == 0


def test_plain_function_past_its_timeout_is_settled_and_does_not_hold_up_exit(
        project: Project) -> None:
    tasks = project.write_tasks(TASKS)
    w = project.worker("--pool", "async", "-c", "4")
    t0 = time.monotonic()
    with pytest.raises(TaskFailed) as info:
        tasks.blocking.delay().get(timeout=20)
    assert info.value.exc_type == "TaskTimeout"
    assert time.monotonic() - t0 < 4
    t1 = time.monotonic()
    assert w.stop() == 0  # the thread still sleeps: it dies with the process
    assert time.monotonic() - t1 < 5


def test_soft_timeout_lets_the_coroutine_clean_up(project: Project) -> None:
    tasks = project.write_tasks(TASKS)
    w = project.worker("--pool", "async", "-c", "4")
    t0 = time.monotonic()
    with pytest.raises(TaskFailed) as info:
        tasks.careful.delay().get(timeout=20)
    assert time.monotonic() - t0 < 5
    assert info.value.exc_type == "TaskTimeout"
    assert "soft timeout" in info.value.exc_message
    assert [line[1] for line in project.ledger()] == ["careful-cleanup"]
    assert w.stop() == 0


def test_revoke_terminate_cancels_a_running_coroutine(project: Project) -> None:
    tasks = project.write_tasks(TASKS)
    w = project.worker("--pool", "async", "-c", "4")
    r = tasks.forever.delay()
    project.wait_until(lambda: ["forever-start"] in [x[1:] for x in project.ledger()],
                       "the task to start")
    r.revoke(terminate=True)
    project.wait_until(lambda: r.state == REVOKED, "the task to be REVOKED", timeout=10)
    assert "forever-cancelled" in [x[1] for x in project.ledger()]
    assert tasks.snooze.delay(0).get(timeout=10) == "MainThread"  # the worker goes on
    assert w.stop() == 0


def test_sigterm_drains_running_coroutines_then_exits(project: Project) -> None:
    tasks = project.write_tasks(TASKS)
    w = project.worker("--pool", "async", "-c", "5", "--grace", "20")
    results = [tasks.snooze.delay(1.0, f"s{i}") for i in range(5)]
    queued = [tasks.snooze.delay(0, f"late{i}") for i in range(3)]  # no room: stay queued
    project.wait_until(lambda: w.log().count("started") >= 5, "five tasks to start")
    w.signal(signal.SIGTERM)
    assert w.wait(20) == 0
    assert [r.get(timeout=5) for r in results] == ["MainThread"] * 5
    done = {x[1] for x in project.ledger()}
    assert {f"s{i}" for i in range(5)} <= done
    assert not any(tag.startswith("late") for tag in done)
    w2 = project.worker("--pool", "async", "-c", "5")
    assert [r.get(timeout=20) for r in queued] == ["MainThread"] * 3
    assert w2.stop() == 0


def test_second_signal_cancels_and_gives_back(project: Project) -> None:
    tasks = project.write_tasks(TASKS)
    w = project.worker("--pool", "async", "-c", "2", "--grace", "30")
    r = tasks.forever.delay()
    project.wait_until(lambda: ["forever-start"] in [x[1:] for x in project.ledger()],
                       "the task to start")
    w.signal(signal.SIGTERM)
    w.wait_for_log("stopping")
    w.signal(signal.SIGTERM)
    assert w.wait(10) == 0
    assert "forever-cancelled" in [x[1] for x in project.ledger()]
    assert "1 unfinished task(s) returned" in w.log()
    assert r.state not in (REVOKED, "FAILURE", "SUCCESS")


def test_async_producer_calls_do_not_block_the_loop(project: Project) -> None:
    tasks = project.write_tasks(TASKS)
    w = project.worker("--pool", "async", "-c", "4")

    async def main() -> tuple[str, int]:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        t = asyncio.create_task(ticker())
        r = await tasks.snooze.adelay(1.0)
        r2 = await tasks.snooze.aapply_async((0,))
        value = await r.aget(timeout=20)
        await r2.aget(timeout=20)
        stop.set()
        await t
        return value, ticks

    value, ticks = asyncio.run(main())
    assert value == "MainThread"
    assert ticks > 30, f"the loop ticked only {ticks} times while aget waited ~1 s"
    assert w.stop() == 0


LIMITED = '''
import asyncio
import threading

from conveyor import Middleware


class Mark(Middleware):
    def execute(self, call, call_next):
        record("mw-in", threading.current_thread().name)
        try:
            return call_next(call)
        finally:
            record("mw-out")


@app.task(concurrency=1)
async def one_at_a_time(i):
    record("in", i, time.time())
    await asyncio.sleep(0.2)
    record("out", i, time.time())


@app.task(bind=True)
async def reporting(ctx):
    ctx.progress(1, 2, step="half")
    await asyncio.sleep(1.5)
    return "done"


@app.task
async def wrapped():
    await asyncio.sleep(0.05)
    return threading.current_thread().name


if os.environ.get("WITH_MIDDLEWARE"):
    app.middleware = (Mark(),)  # before the worker builds its executor
'''


def test_concurrency_limit_and_progress_hold_on_the_loop(project: Project) -> None:
    tasks = project.write_tasks(LIMITED)
    w = project.worker("--pool", "async", "-c", "10")
    r = tasks.reporting.delay()
    project.wait_until(lambda: (r.progress or {}).get("step") == "half", "progress")
    tasks.one_at_a_time.map([(i,) for i in range(4)]).get(timeout=30)
    spans: dict[str, dict[str, float]] = {}
    for _, kind, i, at in (x for x in project.ledger() if x[1] in ("in", "out")):
        spans.setdefault(i, {})[kind] = float(at)
    ordered = sorted(spans.values(), key=lambda s: s["in"])
    assert len(ordered) == 4
    for a, b in zip(ordered, ordered[1:], strict=False):
        assert b["in"] >= a["out"] - 0.01, "concurrency=1 ran two at once"
    assert r.get(timeout=10) == "done"
    assert w.stop() == 0


def test_execute_middleware_wraps_async_tasks_on_the_loop(project: Project) -> None:
    tasks = project.write_tasks(LIMITED)
    w = project.worker("--pool", "async", "-c", "4", env={"WITH_MIDDLEWARE": "1"})
    assert tasks.wrapped.delay().get(timeout=20) == "MainThread"  # the coroutine: on the loop
    marks = [x[1:] for x in project.ledger()]
    assert marks[0][0] == "mw-in" and marks[0][1].startswith("conveyor-sync")
    assert marks[1] == ["mw-out"]
    assert w.stop() == 0
