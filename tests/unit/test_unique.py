"""Unique tasks: `apply_async(unique_key=...)`, `@app.task(unique=True)` and `unique_for`
(debounce), on memory:// with a fake clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from conveyor import ConfigError, Conveyor, FakeClock
from conveyor.unique import arguments_digest, dedup_key


def test_unique_key_returns_the_queued_result(app: Conveyor) -> None:
    @app.task
    def work(x: int) -> int:
        return x

    first = work.apply_async((1,), unique_key="report")
    again = work.apply_async((2,), unique_key="report")
    assert again.id == first.id  # the existing Result, nothing new written
    other = work.apply_async((3,), unique_key="other")
    assert other.id != first.id
    assert app.drain() == 2
    assert first.get() == 1
    after = work.apply_async((4,), unique_key="report")  # finished: the key is free again
    assert after.id != first.id
    assert app.drain() == 1 and after.get() == 4


def test_unique_while_running(app: Conveyor, clock: FakeClock) -> None:
    @app.task
    def work(x: int) -> int:
        return x

    first = work.apply_async((1,), unique_key="k")
    (running,) = app.backend.claim(None, "w", clock.now(), 60, 1)
    assert running.id == first.id
    assert work.apply_async((1,), unique_key="k").id == first.id


def test_unique_task_keys_on_its_arguments(app: Conveyor) -> None:
    @app.task(unique=True)
    def sync(account: int, full: bool = False) -> int:
        return account

    a = sync.delay(1)
    assert sync.delay(1).id == a.id
    assert sync.apply_async((1,), {}).id == a.id
    b = sync.delay(1, full=True)
    c = sync.delay(2)
    assert len({a.id, b.id, c.id}) == 3
    group = sync.map([(1,), (2,), (3,)])  # map dedups too
    assert group.ids[:2] == [a.id, c.id]
    assert app.drain() == 4


def test_unique_for_debounces_after_the_task_finished(app: Conveyor, clock: FakeClock) -> None:
    @app.task(unique_for=60)
    def rebuild(site: str) -> str:
        return site

    first = rebuild.delay("shop")
    assert app.drain() == 1
    assert rebuild.delay("shop").id == first.id  # finished, but within 60 s
    clock.advance(61)
    later = rebuild.delay("shop")
    assert later.id != first.id
    assert app.drain() == 1


def test_unique_for_per_call_and_timedelta(app: Conveyor, clock: FakeClock) -> None:
    @app.task
    def ping() -> str:
        return "pong"

    first = ping.apply_async(unique_key="ping", unique_for=timedelta(seconds=10))
    app.drain()
    assert ping.apply_async(unique_key="ping").id == first.id
    clock.advance(11)
    assert ping.apply_async(unique_key="ping").id != first.id
    plain = ping.apply_async(unique_for=5)  # unique_for alone: keyed by the arguments
    assert ping.apply_async(unique_for=5).id == plain.id


def test_unique_options_are_validated(app: Conveyor) -> None:
    @app.task
    def work() -> None: ...

    with pytest.raises(ConfigError, match="unique_key must be a non-empty string"):
        work.apply_async(unique_key="")
    with pytest.raises(ConfigError, match="unique_for must be >= 0"):
        work.apply_async(unique_for=-1)


def test_the_digest_is_canonical() -> None:
    assert arguments_digest((1, [2]), {"a": 1, "b": 2}) == arguments_digest([1, (2,)],
                                                                            {"b": 2, "a": 1})
    assert arguments_digest((1,), {}) != arguments_digest((2,), {})
    assert arguments_digest((b"x",), {}) != arguments_digest(("x",), {})


def test_dedup_key_shapes(app: Conveyor) -> None:
    @app.task(unique=True, unique_for=5)
    def u(x: int) -> None: ...

    @app.task
    def plain(x: int) -> None: ...

    key, retention = dedup_key(u, (1,), {})
    assert key is not None and key.startswith(f"unique:{u.name}:") and retention == 5
    assert dedup_key(plain, (1,), {}) == (None, 0.0)
    assert dedup_key(plain, (1,), {}, unique_key="k") == ("unique:k", 0.0)


def test_eager_mode_runs_every_call(clock: FakeClock) -> None:
    app = Conveyor("memory://", clock=clock, eager=True)

    @app.task(unique=True)
    def work(x: int) -> int:
        return x

    assert work.delay(1).get() == 1
    assert work.delay(1).get() == 1  # nothing is queued in eager mode, so nothing to share
