"""The producer side: delay, apply_async, map, task names and bound context (memory backend)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conveyor import (
    PENDING,
    REVOKED,
    SCHEDULED,
    SUCCESS,
    ConfigError,
    Conveyor,
    FakeClock,
    ResultGroup,
    SerializationError,
    TaskContext,
    TaskFailed,
)


def plain_add(a: int, b: int) -> int:
    return a + b


def stats(app: Conveyor) -> dict[str, Any]:
    return app.backend.queue_stats(app.clock.now())


# --- names ----------------------------------------------------------------------------------
def test_default_name_is_module_dot_function(app: Conveyor) -> None:
    t = app.task(plain_add)
    assert t.name == f"{__name__}.plain_add"
    assert app.tasks[t.name] is t


def test_explicit_name(app: Conveyor) -> None:
    t = app.task(name="shop.add")(plain_add)
    assert t.name == "shop.add"
    assert "shop.add" in app.tasks
    r = t.delay(1, 2)
    app.drain()
    assert r.get(timeout=1) == 3


def test_task_keeps_the_function_identity(app: Conveyor) -> None:
    t = app.task(plain_add)
    assert t.__name__ == "plain_add" and t.__wrapped__ is plain_add


# --- plain call -----------------------------------------------------------------------------
def test_plain_call_runs_inline_and_enqueues_nothing(app: Conveyor) -> None:
    t = app.task(plain_add)
    assert t(1, 2) == 3
    assert stats(app) == {}


def test_plain_call_of_bound_task_gets_a_context(app: Conveyor) -> None:
    @app.task(bind=True, retries=2, queue="q")
    def who(ctx: TaskContext, x: int) -> tuple[str, int, int, str, int]:
        return ctx.name, ctx.attempt, ctx.retries_left, ctx.queue, x

    assert who(7) == (who.name, 1, 2, "q", 7)


# --- delay / apply_async --------------------------------------------------------------------
def test_delay_enqueues_and_returns_a_result(app: Conveyor) -> None:
    t = app.task(plain_add)
    r = t.delay(2, 3)
    assert isinstance(r.id, str) and r.id
    assert r.state == PENDING
    assert stats(app)["default"].ready == 1
    assert app.drain() == 1
    assert r.state == SUCCESS
    assert r.get(timeout=1) == 5


@pytest.mark.parametrize("args, kwargs, culprit", [
    ((math.nan, 1), {}, "'a'"),
    ((1, datetime(2024, 1, 1)), {}, "'b'"),
    ((1,), {"b": object()}, "'b'"),
    ((1, {1, 2}), {}, "'b'"),
], ids=["nan-positional", "datetime", "object-keyword", "set"])
def test_unserializable_argument_is_named_and_nothing_enqueued(
        app: Conveyor, args: tuple[Any, ...], kwargs: dict[str, Any], culprit: str) -> None:
    t = app.task(plain_add)
    with pytest.raises(SerializationError) as info:
        t.delay(*args, **kwargs)
    text = str(info.value)
    assert f"argument {culprit}" in text
    assert t.name in text
    assert "nothing was enqueued" in text
    assert stats(app) == {}


def test_unserializable_extra_positional_is_named(app: Conveyor) -> None:
    @app.task
    def star(*items: Any) -> int:
        return len(items)

    with pytest.raises(SerializationError, match="position 1"):
        star.delay(1, object())
    assert stats(app) == {}


def test_unserializable_in_map_enqueues_nothing(app: Conveyor) -> None:
    t = app.task(plain_add)
    with pytest.raises(SerializationError):
        t.map([(1, 2), (3, object())])
    assert stats(app) == {}


@pytest.mark.parametrize("args, kwargs", [
    ((1,), {}),
    ((1, 2, 3), {}),
    ((1, 2), {"c": 3}),
    ((1,), {"a": 2}),
])
def test_argument_mismatch_is_a_type_error_at_delay(
        app: Conveyor, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    t = app.task(plain_add)
    with pytest.raises(TypeError, match=t.name):
        t.delay(*args, **kwargs)
    assert stats(app) == {}


def test_countdown_makes_it_scheduled(app: Conveyor, clock: FakeClock) -> None:
    t = app.task(plain_add)
    r = t.apply_async((1, 2), countdown=30)
    assert r.state == SCHEDULED
    assert stats(app)["default"].scheduled == 1
    assert app.drain() == 0
    clock.advance(29)
    assert r.state == SCHEDULED
    clock.advance(1)
    assert r.state == PENDING
    assert app.drain() == 1
    assert r.get(timeout=1) == 3


def test_countdown_as_timedelta(app: Conveyor, clock: FakeClock) -> None:
    r = app.task(plain_add).apply_async((1, 2), countdown=timedelta(minutes=1))
    clock.advance(59)
    assert r.state == SCHEDULED
    clock.advance(1)
    assert r.state == PENDING


@pytest.mark.parametrize("aware", [True, False], ids=["aware", "naive-local"])
def test_eta_makes_it_scheduled(app: Conveyor, clock: FakeClock, aware: bool) -> None:
    when = datetime.fromtimestamp(clock.now() + 120, UTC)
    if not aware:
        when = when.astimezone().replace(tzinfo=None)  # naive means local time
    r = app.task(plain_add).apply_async((1, 2), eta=when)
    assert r.state == SCHEDULED
    clock.advance(119)
    assert app.drain() == 0
    clock.advance(1.5)
    assert app.drain() == 1
    assert r.get(timeout=1) == 3


def test_eta_in_the_past_runs_now(app: Conveyor, clock: FakeClock) -> None:
    r = app.task(plain_add).apply_async(
        (1, 2), eta=datetime.fromtimestamp(clock.now() - 60, UTC))
    assert r.state == PENDING


def test_priority_higher_runs_first_fifo_within(app: Conveyor) -> None:
    order: list[str] = []

    @app.task(priority=1)
    def record(label: str) -> None:
        order.append(label)

    record.apply_async(("low-1",), priority=0)
    record.delay("default-prio-1")  # the task's priority: 1
    record.apply_async(("high-1",), priority=9)
    record.apply_async(("low-2",), priority=0)
    record.apply_async(("high-2",), priority=9)
    record.delay("default-prio-2")
    app.drain()
    assert order == ["high-1", "high-2", "default-prio-1", "default-prio-2", "low-1", "low-2"]


def test_task_id(app: Conveyor) -> None:
    r = app.task(plain_add).apply_async((1, 2), task_id="my-id-1")
    assert r.id == "my-id-1"
    app.drain()
    assert app.result("my-id-1").get(timeout=1) == 3


def test_queue_option(app: Conveyor) -> None:
    t = app.task(queue="media")(plain_add)
    t.delay(1, 1)
    t.apply_async((1, 1), queue="other")
    assert set(stats(app)) == {"media", "other"}
    assert app.drain(["media"]) == 1
    assert set(stats(app)) == {"other"}
    assert app.queues() == ["default", "media"]


@pytest.mark.parametrize("expires", [10, timedelta(seconds=10)], ids=["seconds", "timedelta"])
def test_expired_before_start_is_revoked(app: Conveyor, clock: FakeClock, expires: Any) -> None:
    ran: list[int] = []

    @app.task
    def job(x: int) -> None:
        ran.append(x)

    r = job.apply_async((1,), expires=expires)
    clock.advance(11)
    assert app.drain() == 1
    assert ran == []
    assert r.state == REVOKED
    failure = r.get(timeout=1, propagate=False)
    assert isinstance(failure, TaskFailed)
    assert "expired" in failure.exc_message


def test_expires_as_datetime(app: Conveyor, clock: FakeClock) -> None:
    r = app.task(plain_add).apply_async(
        (1, 2), expires=datetime.fromtimestamp(clock.now() + 5, UTC))
    clock.advance(6)
    app.drain()
    assert r.state == REVOKED


def test_not_yet_expired_runs(app: Conveyor, clock: FakeClock) -> None:
    r = app.task(plain_add).apply_async((1, 2), expires=10)
    clock.advance(9)
    app.drain()
    assert r.get(timeout=1) == 3


def test_map_returns_group_in_order(app: Conveyor) -> None:
    @app.task
    def square(x: int) -> int:
        return x * x

    group = square.map([(3,), [1], 2, (5,)])  # tuples, lists and bare values
    assert isinstance(group, ResultGroup)
    assert len(group) == 4
    assert not group.ready()
    assert group.completed_count() == 0
    app.drain()
    assert group.ready()
    assert group.completed_count() == 4
    assert group.get(timeout=1) == [9, 1, 4, 25]
    assert [r.get(timeout=1) for r in group] == [9, 1, 4, 25]


def test_map_keeps_order_against_priority(app: Conveyor) -> None:
    """Values come back in enqueue order even when the tasks ran in another order."""
    t = app.task(plain_add)
    t.apply_async((100, 0), priority=5)  # runs first, not part of the group
    group = t.map([(1, 1), (2, 2), (3, 3)])
    app.drain()
    assert group.get(timeout=1) == [2, 4, 6]


# --- bind -----------------------------------------------------------------------------------
def test_bound_task_receives_context(app: Conveyor) -> None:
    seen: list[TaskContext] = []

    @app.task(bind=True, name="ctx.probe", queue="q1", retries=2)
    def probe(ctx: TaskContext, x: int) -> int:
        seen.append(ctx)
        return x

    r = probe.apply_async((4,), task_id="fixed")
    app.drain(["q1"])
    assert r.get(timeout=1) == 4
    (ctx,) = seen
    assert isinstance(ctx, TaskContext)
    assert (ctx.id, ctx.name, ctx.attempt, ctx.retries_left, ctx.queue) == (
        "fixed", "ctx.probe", 1, 2, "q1")
    assert ctx.cancelled is False


def test_bound_task_signature_excludes_context(app: Conveyor) -> None:
    @app.task(bind=True)
    def probe(ctx: TaskContext, x: int) -> int:
        return x

    with pytest.raises(TypeError):
        probe.delay()
    with pytest.raises(TypeError):
        probe.delay(1, 2)
    assert stats(app) == {}


# --- call-site validation gaps (bugs) --------------------------------------------------------
def test_bad_priority_at_call_site_is_a_config_error(app: Conveyor) -> None:
    with pytest.raises(ConfigError, match="priority"):
        app.task(plain_add).apply_async((1, 2), priority="high")  # type: ignore[arg-type]


def test_non_string_task_id_refused_at_call_site(app: Conveyor) -> None:
    with pytest.raises((ConfigError, TypeError)):
        app.task(plain_add).apply_async((1, 2), task_id=5)  # type: ignore[arg-type]
    assert stats(app) == {}


def test_async_producer_calls(tmp_path: Any) -> None:
    import asyncio

    from conveyor import Conveyor

    app = Conveyor(f"sqlite:///{tmp_path / 'q.db'}")

    @app.task(name="t.double")
    def double(x: int) -> int:
        return 2 * x

    async def main() -> list[Any]:
        r1 = await double.adelay(2)
        r2 = await double.aapply_async((5,), countdown=0)
        await asyncio.to_thread(app.drain)
        return [await r1.aget(timeout=5), await r2.aget(timeout=5)]

    assert asyncio.run(main()) == [4, 10]


def test_a_retry_of_a_task_that_started_before_it_expired_runs_on(app: Conveyor,
                                                                   clock: FakeClock) -> None:
    calls: list[int] = []

    @app.task(name="t.flaky_expiring", retries=2, retry_delay=30)
    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("first try fails")
        return "done"

    r = flaky.apply_async(expires=10)  # the retry comes due 30 s later, after expiry
    app.drain()
    assert r.get(timeout=1) == "done"
    assert len(calls) == 2
