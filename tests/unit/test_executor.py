"""The executor through `drain()` on the memory backend with a FakeClock: outcomes, retries,
dead letters, stored results."""

from __future__ import annotations

import time
from typing import Any

import pytest

from conveyor import (
    FAILURE,
    PENDING,
    RETRY,
    SUCCESS,
    ConfigError,
    Conveyor,
    FakeClock,
    Reject,
    Retry,
    TaskContext,
    TaskFailed,
    TimeoutError,
)
from conveyor.backends.base import Message, Release
from conveyor.envelope import Envelope
from conveyor.retry import EXPLICIT_RETRY_BUDGET
from conveyor.worker.executor import Executor, execute


def dead_reasons(app: Conveyor) -> dict[str, str]:
    return {d.id: d.reason for d in app.backend.dead_letters()}


def enqueue_raw(app: Conveyor, body: bytes, id: str = "raw-1") -> None:
    app.backend.enqueue([Message(id, "default", body)], app.clock.now())


def run_one(app: Conveyor) -> Any:
    """Claim and execute one delivery by hand; returns its settlement (already applied)."""
    (d,) = app.backend.claim(None, "test", app.clock.now(), app.lease, 1)
    fin = execute(Executor(app), d)
    assert app.backend.settle([fin.settlement], app.clock.now()) == [True]
    return fin.settlement


# --- success --------------------------------------------------------------------------------
def test_success_stores_the_value(app: Conveyor) -> None:
    @app.task
    def make(n: int) -> dict[str, Any]:
        return {"n": n, "items": list(range(n))}

    r = make.delay(3)
    assert app.drain() == 1
    assert r.state == SUCCESS and r.ready() and r.successful()
    assert r.get(timeout=1) == {"n": 3, "items": [0, 1, 2]}
    assert app.result(r.id).get(timeout=1) == {"n": 3, "items": [0, 1, 2]}
    assert app.backend.queue_stats(app.clock.now()) == {}


def test_none_result_is_stored(app: Conveyor) -> None:
    r = app.task(name="nothing")(lambda: None).delay()
    app.drain()
    assert r.state == SUCCESS
    assert r.get(timeout=1) is None


def test_async_task_runs(app: Conveyor) -> None:
    @app.task
    async def double(x: int) -> int:
        return 2 * x

    r = double.delay(21)
    app.drain()
    assert r.get(timeout=1) == 42


def test_unserializable_return_value_dead_letters(app: Conveyor) -> None:
    @app.task
    def bad() -> object:
        return object()

    r = bad.delay()
    app.drain()
    assert r.state == FAILURE
    assert "cannot be serialized" in dead_reasons(app)[r.id]
    with pytest.raises(TaskFailed) as info:
        r.get(timeout=1)
    assert info.value.exc_type == "SerializationError"


# --- retries --------------------------------------------------------------------------------
def test_exception_with_retries_goes_through_retry_then_success(app: Conveyor,
                                                                clock: FakeClock) -> None:
    calls: list[int] = []

    @app.task(retries=2, retry_delay=10)
    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise OSError("try again")
        return "ok"

    r = flaky.delay()
    s = run_one(app)
    assert isinstance(s, Release) and s.ready_at == pytest.approx(clock.now() + 10)
    assert r.state == RETRY
    assert app.drain() == 0  # not due, and drain() only waits for retries it scheduled itself
    clock.advance(10)
    run_one(app)
    assert r.state == RETRY
    clock.advance(10)
    run_one(app)
    assert r.state == SUCCESS and r.get(timeout=1) == "ok"
    assert len(calls) == 3


def test_exception_exhausting_retries_fails(app: Conveyor, clock: FakeClock) -> None:
    calls: list[int] = []

    @app.task(retries=2, retry_delay=5)
    def broken() -> None:
        calls.append(1)
        raise ValueError(f"attempt {len(calls)}")

    r = broken.delay()
    start = clock.now()
    assert app.drain() == 3
    assert len(calls) == 3
    assert clock.now() - start >= 10  # two 5 s retry delays, on the fake clock
    assert r.state == FAILURE
    with pytest.raises(TaskFailed) as info:
        r.get(timeout=1)
    assert info.value.exc_type == "ValueError"
    assert info.value.exc_message == "attempt 3"
    assert "failed after 3 attempts" in dead_reasons(app)[r.id]


def test_retry_on_filters(app: Conveyor) -> None:
    calls: list[str] = []

    @app.task(retries=3, retry_on=(OSError,))
    def picky(kind: str) -> None:
        calls.append(kind)
        raise (OSError if kind == "io" else KeyError)(kind)

    io = picky.delay("io")
    key = picky.delay("key")
    app.drain()
    assert calls.count("io") == 4  # first run + 3 retries
    assert calls.count("key") == 1  # not retryable: fails at once
    assert io.state == FAILURE and key.state == FAILURE
    assert io.get(timeout=1, propagate=False).exc_type == "OSError"
    assert key.get(timeout=1, propagate=False).exc_type == "KeyError"


def test_retry_on_accepts_a_single_class(app: Conveyor) -> None:
    t = app.task(retries=1, retry_on=OSError)(lambda: None)
    assert t.options.retry_on == (OSError,)


def test_explicit_retry_with_delay(app: Conveyor, clock: FakeClock) -> None:
    calls: list[float] = []

    @app.task(retries=1, retry_delay=1000)
    def later() -> str:
        calls.append(clock.now())
        if len(calls) == 1:
            raise Retry(delay=42)
        return "done"

    r = later.delay()
    s = run_one(app)
    assert isinstance(s, Release) and s.ready_at == pytest.approx(calls[0] + 42)
    clock.advance(41)
    assert app.drain() == 0
    clock.advance(1)
    assert app.drain() == 1
    assert r.get(timeout=1) == "done"
    assert calls[1] - calls[0] == pytest.approx(42)


def test_ctx_retry(app: Conveyor, clock: FakeClock) -> None:
    seen: list[tuple[int, int]] = []

    @app.task(bind=True, retries=2)
    def polite(ctx: TaskContext) -> int:
        seen.append((ctx.attempt, ctx.retries_left))
        if ctx.attempt < 3:
            ctx.retry(delay=3)
        return ctx.attempt

    r = polite.delay()
    start = clock.now()
    app.drain()
    assert r.get(timeout=1) == 3
    assert seen == [(1, 2), (2, 1), (3, 0)]
    assert clock.now() - start == pytest.approx(6)


def test_explicit_retry_without_retries_gets_the_default_budget(app: Conveyor) -> None:
    calls: list[int] = []

    @app.task
    def again() -> None:
        calls.append(1)
        raise Retry(delay=1)

    r = again.delay()
    app.drain()
    assert len(calls) == 1 + EXPLICIT_RETRY_BUDGET == 4
    assert r.state == FAILURE
    assert r.get(timeout=1, propagate=False).exc_type == "Retry"


def test_ctx_retry_carries_the_exception(app: Conveyor) -> None:
    @app.task(bind=True, retries=1)
    def wrapped(ctx: TaskContext) -> None:
        ctx.retry(delay=0, exc=ConnectionError("backend down"))

    r = wrapped.delay()
    app.drain()
    failure = r.get(timeout=1, propagate=False)
    assert (failure.exc_type, failure.exc_message) == ("ConnectionError", "backend down")


def test_apply_async_retries_overrides_the_task(app: Conveyor) -> None:
    calls: list[int] = []

    @app.task(retries=5, retry_delay=0)
    def broken() -> None:
        calls.append(1)
        raise RuntimeError("no")

    broken.apply_async(retries=1)
    app.drain()
    assert len(calls) == 2


def test_drain_waits_for_retries_without_real_sleep(app: Conveyor, clock: FakeClock) -> None:
    calls: list[int] = []

    @app.task(retries=3, retry_delay=60, retry_backoff=True)
    def slow_to_work() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise OSError("later")
        return "ok"

    r = slow_to_work.delay()
    fake_start, real_start = clock.now(), time.monotonic()
    assert app.drain() == 4
    assert r.get(timeout=1) == "ok"
    assert clock.now() - fake_start == pytest.approx(60 + 120 + 240)
    assert time.monotonic() - real_start < 2.0


# --- dead letters ---------------------------------------------------------------------------
def test_reject_dead_letters_at_once(app: Conveyor) -> None:
    calls: list[int] = []

    @app.task(retries=5)
    def refuse(x: int) -> None:
        calls.append(x)
        raise Reject("bad input 7")

    r = refuse.delay(7)
    app.drain()
    assert calls == [7]
    assert dead_reasons(app) == {r.id: "rejected: bad input 7"}
    failure = r.get(timeout=1, propagate=False)
    assert (failure.exc_type, failure.exc_message) == ("Reject", "bad input 7")


def test_unknown_task_dead_letters(app: Conveyor) -> None:
    env = Envelope("u-1", "nowhere.task", [1])
    enqueue_raw(app, app.codec.encode(env.to_dict()), "u-1")
    assert app.drain() == 1
    reason = dead_reasons(app)["u-1"]
    assert "unknown task" in reason and "nowhere.task" in reason
    assert app.result("u-1").get(timeout=1, propagate=False).exc_type == "UnknownTask"


@pytest.mark.parametrize("body", [b"garbage", b"J{not json", b'J["a list"]', b""],
                         ids=["no-marker", "bad-json", "not-an-object", "empty"])
def test_undecodable_body_dead_letters(app: Conveyor, body: bytes) -> None:
    enqueue_raw(app, body)
    assert app.drain() == 1
    assert dead_reasons(app)["raw-1"].startswith("undecodable message")
    assert app.result("raw-1").state == FAILURE


def test_tampered_body_dead_letters_with_bad_signature() -> None:
    app = Conveyor("memory://", secret_key="k", clock=FakeClock(time.time()))
    enqueue_raw(app, b'J{"v":1,"id":"raw-1","task":"t"}')
    app.drain()
    assert dead_reasons(app)["raw-1"].startswith("bad signature")


def test_arguments_that_do_not_fit_dead_letter(app: Conveyor) -> None:
    ran: list[int] = []

    @app.task(retries=3)
    def one(x: int) -> None:
        ran.append(x)

    env = Envelope("a-1", one.name, [1, 2, 3])
    enqueue_raw(app, app.codec.encode(env.to_dict()), "a-1")
    app.drain()
    assert ran == []
    reason = dead_reasons(app)["a-1"]
    assert reason.startswith(f"arguments do not fit {one.name}")
    assert app.result("a-1").get(timeout=1, propagate=False).exc_type == "TypeError"


def test_worker_goes_on_after_bad_messages(app: Conveyor) -> None:
    t = app.task(name="fine")(lambda: "fine")
    enqueue_raw(app, b"garbage", "bad-1")
    r = t.delay()
    assert app.drain() == 2
    assert r.get(timeout=1) == "fine"


# --- failures as the producer sees them ------------------------------------------------------
def test_task_failed_carries_type_message_and_traceback(app: Conveyor) -> None:
    @app.task
    def explode(n: int) -> None:
        raise ZeroDivisionError(f"cannot split {n} ways")  # the raising line

    r = explode.delay(0)
    app.drain()
    with pytest.raises(TaskFailed) as info:
        r.get(timeout=1)
    err = info.value
    assert err.exc_type == "ZeroDivisionError"
    assert err.exc_message == "cannot split 0 ways"
    assert "raise ZeroDivisionError(f\"cannot split {n} ways\")  # the raising line" in err.traceback
    assert "Traceback (most recent call last)" in err.traceback
    assert err.task_id == r.id and err.task_name == explode.name
    assert "ZeroDivisionError: cannot split 0 ways" in str(err)


def test_propagate_false_returns_the_failure(app: Conveyor) -> None:
    r = app.task(name="div")(lambda: 1 / 0).delay()
    app.drain()
    failure = r.get(timeout=1, propagate=False)
    assert isinstance(failure, TaskFailed)
    assert failure.exc_type == "ZeroDivisionError"
    assert r.failed()


def test_group_get_propagates_failures(app: Conveyor) -> None:
    @app.task
    def inv(x: int) -> float:
        return 1 / x

    group = inv.map([(1,), (0,), (4,)])
    app.drain()
    with pytest.raises(TaskFailed):
        group.get(timeout=1)
    values = group.get(timeout=1, propagate=False)
    assert values[0] == 1.0 and values[2] == 0.25
    assert isinstance(values[1], TaskFailed)
    assert group.completed_count() == 2


# --- results --------------------------------------------------------------------------------
def test_store_result_false_get_raises_config_error_at_once(app: Conveyor) -> None:
    t = app.task(store_result=False, name="fire.and.forget")(lambda: 5)
    r = t.delay()
    started = time.monotonic()
    with pytest.raises(ConfigError, match="store_result=False"):
        r.get(timeout=5)
    assert time.monotonic() - started < 1.0
    app.drain()
    with pytest.raises(ConfigError):
        r.get(timeout=5)
    assert r.state == PENDING  # nothing stored
    with pytest.raises(ConfigError):
        t.map([()]).get(timeout=5)


def test_get_times_out(app: Conveyor) -> None:
    r = app.task(name="never")(lambda: 1).delay()
    with pytest.raises(TimeoutError, match="PENDING"):
        r.get(timeout=0.05)


@pytest.mark.parametrize("where", ["app", "task"])
def test_result_ttl_expiry(clock: FakeClock, where: str) -> None:
    app = Conveyor("memory://", clock=clock, result_ttl=3600 if where == "task" else 100)
    t = app.task(result_ttl=100)(lambda: 1) if where == "task" else app.task(lambda: 1)
    r = t.delay()
    app.drain()
    clock.advance(99)
    assert r.state == SUCCESS
    clock.advance(2)
    assert r.state == PENDING  # expired: read as unknown
    app.backend.housekeeping(clock.now())
    assert app.backend.get_results([r.id], clock.now() - 50) == {}  # and really gone


def test_failure_result_ttl_expiry(clock: FakeClock) -> None:
    app = Conveyor("memory://", clock=clock, result_ttl=100)
    r = app.task(name="div")(lambda: 1 / 0).delay()
    app.drain()
    assert r.state == FAILURE
    clock.advance(101)
    app.backend.housekeeping(clock.now())
    stored = app.backend.get_results([r.id], clock.now()).get(r.id)
    assert stored is None or stored.data is None  # the failure payload is gone


def test_get_follows_the_app_clock() -> None:
    app = Conveyor("memory://", clock=FakeClock())  # the default start: Nov 2023
    r = app.task(name="three")(lambda: 3).delay()
    app.drain()
    assert r.state == SUCCESS
    assert r.get(timeout=0.2) == 3


def test_lost_deliveries_rerun_within_the_grace_then_dead_letter(app: Conveyor,
                                                                  clock: FakeClock) -> None:
    """A whole worker SIGKILLed is invisible: the lease expiry redelivers. A task with no
    retries still runs again, until `retries + 1 + LOST_DELIVERY_GRACE` deliveries."""
    from conveyor.retry import LOST_DELIVERY_GRACE

    @app.task(name="t.lost")
    def lost() -> str:
        return "ran"

    r = lost.delay()
    executor = Executor(app)
    for delivery in range(1, LOST_DELIVERY_GRACE + 2):  # each claim's worker "dies"
        (d,) = app.backend.claim(None, "w", clock.now(), app.lease, 1)
        assert d.delivery_count == delivery
        prepared = executor.prepare(d)
        assert not hasattr(prepared, "settlement"), "within the grace it runs"
        clock.advance(app.lease + 1)
    (d,) = app.backend.claim(None, "w", clock.now(), app.lease, 1)
    fin = execute(executor, d)
    app.backend.settle([fin.settlement], clock.now())
    assert r.state == FAILURE
    reason = dead_reasons(app)[r.id]
    assert reason.startswith("worker lost: delivered 5 times without an outcome")
    with pytest.raises(TaskFailed) as info:
        r.get(timeout=1)
    assert info.value.exc_type == "WorkerLost"
