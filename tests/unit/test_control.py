"""Progress reports and revocation in one process: `ctx.progress`, `Result.progress`,
`get(on_progress=...)`, `revoke()`, on memory:// with `drain()` and with the thread pool run
in a thread of the test (docs/control.md)."""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor import (
    PENDING,
    PROGRESS,
    REVOKED,
    STARTED,
    SUCCESS,
    Conveyor,
    FakeClock,
    TaskContext,
    TaskFailed,
    TaskRevoked,
    TimeoutError,
)
from conveyor.backends.memory import MemoryBackend
from conveyor.worker.control import RevocationWatch
from conveyor.worker.current import CurrentTask
from conveyor.worker.pools import ThreadHost


def wait_for(predicate: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)
    return value


# --- progress, in process -------------------------------------------------------------------
def test_progress_while_running_then_gone(app: Conveyor) -> None:
    seen: list[Any] = []

    @app.task(bind=True)
    def job(ctx: TaskContext, n: int) -> str:
        seen.append((app.result(ctx.id).state, app.result(ctx.id).progress))
        assert ctx.progress(1, n, stage="download") is True
        me = app.result(ctx.id)
        seen.append((me.state, me.progress, me.ready()))
        assert ctx.progress(2) is True
        seen.append(app.result(ctx.id).progress)
        return "ok"

    r = job.delay(5)
    assert r.progress is None and r.state == PENDING
    app.drain()
    assert seen == [
        (STARTED, None),
        (PROGRESS, {"current": 1, "total": 5, "stage": "download"}, False),
        {"current": 2, "total": None},
    ]
    assert r.get(timeout=1) == "ok"
    assert (r.state, r.progress) == (SUCCESS, None)


def test_progress_that_cannot_be_serialized_fails_the_task(app: Conveyor) -> None:
    @app.task(bind=True)
    def job(ctx: TaskContext) -> None:
        ctx.progress(1, when=object())

    r = job.delay()
    app.drain()
    failure = r.get(timeout=1, propagate=False)
    assert isinstance(failure, TaskFailed) and failure.exc_type == "SerializationError"


def test_progress_outside_a_worker_goes_nowhere(clock: FakeClock) -> None:
    calls: list[bool] = []

    def job(ctx: TaskContext) -> int:
        calls.append(ctx.progress(1, 2))
        return 7

    app = Conveyor("memory://", clock=clock)
    plain = app.task(bind=True)(job)
    assert plain() == 7  # a plain call
    eager = Conveyor("memory://", eager=True, clock=clock)
    r = eager.task(bind=True, name="eager_job")(job).delay()
    assert r.get() == 7 and r.progress is None and r.revoke() is False
    assert calls == [False, False]


def test_a_backend_failure_does_not_fail_the_task(app: Conveyor,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> bool:
        raise ConnectionError("backend away")

    monkeypatch.setattr(app.backend, "set_progress", broken)

    @app.task(bind=True)
    def job(ctx: TaskContext) -> bool:
        return ctx.progress(1)

    r = job.delay()
    app.drain()
    assert r.get(timeout=1) is False


# --- revoke, in process ---------------------------------------------------------------------
def test_revoke_a_queued_task(app: Conveyor, clock: FakeClock) -> None:
    ran: list[int] = []

    @app.task
    def job(x: int) -> None:
        ran.append(x)

    r, later, kept = job.delay(1), job.apply_async((2,), countdown=60), job.delay(3)
    assert r.revoke() is True
    assert later.revoke(terminate=True) is True
    assert r.revoke() is False  # nothing left to revoke
    assert (r.state, later.state, kept.state) == (REVOKED, REVOKED, PENDING)
    assert r.ready() and not r.failed()
    clock.advance(61)
    app.drain()
    assert ran == [3]
    with pytest.raises(TaskRevoked) as info:
        r.get(timeout=1)
    assert info.value.exc_type == "TaskRevoked" and "revoked" in str(info.value)
    assert info.value.task_name == job.name
    failure = later.get(timeout=1, propagate=False)
    assert isinstance(failure, TaskRevoked) and isinstance(failure, TaskFailed)
    assert kept.revoke() is False  # finished
    assert app.result("never-enqueued").revoke() is False


def test_revoke_a_group(app: Conveyor) -> None:
    @app.task
    def job(x: int) -> int:
        return x

    group = job.map([(1,), (2,), (3,)])
    assert group.revoke() == [True, True, True]
    assert app.drain() == 0
    assert [isinstance(v, TaskRevoked) for v in group.get(timeout=1, propagate=False)] == [
        True, True, True]


def test_an_expired_task_raises_task_revoked(app: Conveyor, clock: FakeClock) -> None:
    @app.task
    def job() -> None:
        pass

    r = job.apply_async(expires=5)
    clock.advance(6)
    app.drain()
    with pytest.raises(TaskRevoked) as info:
        r.get(timeout=1)
    assert info.value.exc_type == "TaskExpired" and "expired" in str(info.value)


def test_task_revoked_pickles() -> None:
    e = TaskRevoked("id", "TaskRevoked", "revoked before it started", "", "t.job")
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is TaskRevoked and str(back) == str(e)


def test_get_with_on_progress_times_out(app: Conveyor) -> None:
    @app.task
    def job() -> None:
        pass

    r = job.delay()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        r.get(timeout=0.2, on_progress=lambda p: None)
    assert time.monotonic() - started < 2


# --- with the thread pool -------------------------------------------------------------------
@pytest.fixture
def live() -> Iterator[Conveyor]:
    app = Conveyor("memory://", lease=3)
    yield app
    app.close()


@pytest.fixture
def host(live: Conveyor) -> Iterator[ThreadHost]:
    h = ThreadHost(live, concurrency=1, queues=None, worker_id="test", grace=5)
    runner = threading.Thread(target=h.run, daemon=True)
    runner.start()
    yield h
    h.stop.set()
    runner.join(10)


def test_get_sees_each_progress_report(live: Conveyor, host: ThreadHost) -> None:
    seen_by_callback: list[dict[str, Any]] = []
    heard = [threading.Event() for _ in range(3)]

    @live.task(bind=True)
    def steps(ctx: TaskContext) -> str:
        for i in range(3):
            ctx.progress(i + 1, 3, step=f"s{i + 1}")
            assert heard[i].wait(10)
        return "done"

    def on_progress(report: dict[str, Any]) -> None:
        seen_by_callback.append(report)
        heard[report["current"] - 1].set()

    assert steps.delay().get(timeout=20, on_progress=on_progress) == "done"
    assert seen_by_callback == [{"current": i, "total": 3, "step": f"s{i}"} for i in (1, 2, 3)]


def test_terminate_a_running_task_in_the_thread_pool(live: Conveyor, host: ThreadHost) -> None:
    looked: list[bool] = []

    @live.task(bind=True)
    def spin(ctx: TaskContext) -> str:
        deadline = time.monotonic() + 20
        while not ctx.cancelled and time.monotonic() < deadline:
            time.sleep(0.01)
        looked.append(ctx.cancelled)
        return "finished anyway"

    @live.task
    def add(a: int, b: int) -> int:
        return a + b

    r = spin.delay()
    wait_for(lambda: r.state == STARTED, what="spin to start")
    assert r.revoke(terminate=True) is True
    started = time.monotonic()
    with pytest.raises(TaskRevoked) as info:
        r.get(timeout=10)
    assert time.monotonic() - started < 3
    assert "terminate" in info.value.exc_message
    assert looked == [True] and r.state == REVOKED
    assert add.delay(2, 3).get(timeout=10) == 5  # the pool goes on


def test_revoke_without_terminate_lets_the_run_finish_but_not_retry(
        live: Conveyor, host: ThreadHost) -> None:
    go = threading.Event()
    runs: list[int] = []

    @live.task(bind=True, retries=3, retry_delay=0.01)
    def flaky(ctx: TaskContext) -> None:
        runs.append(ctx.attempt)
        assert go.wait(10)
        raise OSError("fails, would be retried")

    @live.task(bind=True)
    def finishing(ctx: TaskContext) -> int:
        assert go.wait(10)
        return 42

    r = flaky.delay()
    wait_for(lambda: r.state == STARTED, what="flaky to start")
    assert r.revoke() is True
    go.set()
    with pytest.raises(TaskRevoked) as info:
        r.get(timeout=10)
    assert "not run again" in info.value.exc_message
    assert runs == [1]
    go.clear()
    s = finishing.delay()
    wait_for(lambda: s.state == STARTED, what="finishing to start")
    assert s.revoke() is True
    go.set()
    assert s.get(timeout=10) == 42  # the run that was under way finishes


# --- pieces ---------------------------------------------------------------------------------
def test_revocation_watch_asks_at_most_every_poll() -> None:
    backend = MemoryBackend()
    calls: list[list[str]] = []
    real = backend.revoked

    def counting(ids: Any) -> dict[str, bool]:
        calls.append(list(ids))
        return real(ids)

    backend.revoked = counting  # type: ignore[method-assign]
    watch = RevocationWatch(backend, poll=0.2)
    assert watch.to_stop([]) == set() and calls == []  # nothing runs: nothing asked
    assert watch.to_stop(["a"]) == set() and calls == [["a"]]
    assert watch.to_stop(["a"]) == set() and len(calls) == 1
    time.sleep(0.25)
    watch.to_stop(["a", "b"])
    assert calls[-1] == ["a", "b"]


def test_revocation_watch_survives_an_outage() -> None:
    backend = MemoryBackend()

    def broken(ids: Any) -> dict[str, bool]:
        raise ConnectionError("away")

    backend.revoked = broken  # type: ignore[method-assign]
    assert RevocationWatch(backend, poll=0).to_stop(["a"]) == set()


def test_current_task_running_flag() -> None:
    current = CurrentTask(bytearray(4096))
    assert current.running() is None and current.read() is None
    record = ("id", "tok", "t.job", 1, 0)
    assert current.write(record)
    assert current.running() == record and current.read() == record
    current.done()
    assert current.running() is None and current.read() == record  # still there for reap
    assert not current.write(("x" * 5000, "t", "n", 1, 0))
    assert current.running() is None and current.read() is None
