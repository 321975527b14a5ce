"""Eager mode: `.delay()` runs inline, yet behaves like production where a test would notice."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor import (
    FAILURE,
    SUCCESS,
    Conveyor,
    FakeClock,
    Reject,
    Retry,
    SerializationError,
    TaskContext,
    TaskFailed,
)


@pytest.fixture
def eager(clock: FakeClock) -> Iterator[Conveyor]:
    app = Conveyor("memory://", eager=True, clock=clock)
    yield app
    app.close()


def test_runs_inline_and_enqueues_nothing(eager: Conveyor) -> None:
    calls: list[int] = []

    @eager.task
    def add(a: int, b: int) -> int:
        calls.append(1)
        return a + b

    r = add.delay(1, 2)
    assert calls == [1]  # already ran
    assert r.state == SUCCESS and r.ready()
    assert r.get() == 3
    assert eager.backend.queue_stats(eager.clock.now()) == {}


def test_arguments_go_through_the_serializer(eager: Conveyor) -> None:
    """The task sees what a worker would: tuples arrive as lists, int keys as strings."""
    seen: list[Any] = []

    @eager.task
    def look(x: Any, y: Any) -> None:
        seen.extend([x, y])

    look.delay((1, 2), {3: "c"})
    assert seen == [[1, 2], {"3": "c"}]


@pytest.mark.parametrize("value", [math.nan, object(), {1}], ids=["nan", "object", "set"])
def test_still_refuses_unserializable_arguments(eager: Conveyor, value: Any) -> None:
    calls: list[int] = []

    @eager.task
    def take(x: Any) -> None:
        calls.append(1)

    with pytest.raises(SerializationError, match="argument 'x'"):
        take.delay(value)
    assert calls == []


def test_argument_mismatch_is_a_type_error(eager: Conveyor) -> None:
    @eager.task
    def one(x: int) -> int:
        return x

    with pytest.raises(TypeError):
        one.delay(1, 2)


def test_retries_inline(eager: Conveyor) -> None:
    calls: list[int] = []

    @eager.task(retries=3, retry_delay=3600)
    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise OSError("again")
        return "ok"

    r = flaky.delay()
    assert len(calls) == 3
    assert r.get() == "ok"


def test_explicit_retry_inline(eager: Conveyor) -> None:
    attempts: list[int] = []

    @eager.task(bind=True)
    def polite(ctx: TaskContext) -> int:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise Retry(delay=60)
        return ctx.attempt

    assert polite.delay().get() == 3
    assert attempts == [1, 2, 3]


def test_failure_reraises_task_failed_from_get(eager: Conveyor) -> None:
    calls: list[int] = []

    @eager.task(retries=2)
    def broken() -> None:
        calls.append(1)
        raise KeyError("missing")

    r = broken.delay()  # does not raise here: the failure is the result's
    assert len(calls) == 3
    assert r.state == FAILURE and r.failed()
    with pytest.raises(TaskFailed) as info:
        r.get()
    assert info.value.exc_type == "KeyError"
    assert "raise KeyError" in info.value.traceback
    assert isinstance(r.get(propagate=False), TaskFailed)


def test_reject_fails_without_retry(eager: Conveyor) -> None:
    calls: list[int] = []

    @eager.task(retries=5)
    def refuse() -> None:
        calls.append(1)
        raise Reject("nope")

    r = refuse.delay()
    assert calls == [1]
    assert r.get(propagate=False).exc_message == "nope"


def test_map_in_eager_mode(eager: Conveyor) -> None:
    @eager.task
    def square(x: int) -> int:
        return x * x

    group = square.map([(1,), (2,), (3,)])
    assert group.ready()
    assert group.completed_count() == 3
    assert group.get() == [1, 4, 9]


def test_bound_context_in_eager_mode(eager: Conveyor) -> None:
    @eager.task(bind=True, retries=4, queue="q", name="eager.ctx")
    def who(ctx: TaskContext) -> list[Any]:
        return [ctx.id, ctx.name, ctx.attempt, ctx.retries_left, ctx.queue]

    r = who.apply_async(task_id="e-1")
    assert r.id == "e-1"
    assert r.get() == ["e-1", "eager.ctx", 1, 4, "q"]


def test_unserializable_return_value_fails(eager: Conveyor) -> None:
    @eager.task
    def bad() -> object:
        return object()

    with pytest.raises(TaskFailed) as info:
        bad.delay().get()
    assert info.value.exc_type == "SerializationError"


def test_app_result_finds_an_eager_outcome() -> None:
    from conveyor import Conveyor

    app = Conveyor("memory://", eager=True)

    @app.task(name="t.mul")
    def mul(a: int, b: int) -> int:
        return a * b

    r = mul.delay(6, 7)
    again = app.result(r.id)
    assert again.state == "SUCCESS"
    assert again.get() == 42
