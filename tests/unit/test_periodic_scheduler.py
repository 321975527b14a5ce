"""The periodic scheduler on memory:// with a FakeClock: each tick once however many schedulers
run, first deploy, downtime with and without catch_up, overlap, DST, outages, and the read
side (`conveyor periodic` / `status`)."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from conveyor import (
    REVOKED,
    SCHEDULED,
    BackendUnavailable,
    ConfigError,
    Conveyor,
    FakeClock,
    SerializationError,
    TaskContext,
    crontab,
)
from conveyor.cli.info import render_periodic, render_status
from conveyor.inspect import Inspector
from conveyor.periodic import Scheduler, parse_tick_id, tick_id

NY = ZoneInfo("America/New_York")
T0 = datetime(2025, 3, 3, 10, 0, 5, tzinfo=UTC).timestamp()  # a Monday, 5 s past a minute


def make_app(start: float = T0) -> tuple[Conveyor, FakeClock]:
    clock = FakeClock(start)
    return Conveyor("memory://", clock=clock), clock


def ledger_task(app: Conveyor, ran: list[float], *schedule: Any, **options: Any) -> Any:
    """A periodic task that records the tick it runs (from its id)."""
    @app.periodic(*schedule, bind=True, name="t.job", **options)
    def job(ctx: TaskContext) -> str:
        tick = parse_tick_id("t.job", ctx.id)
        assert tick is not None, ctx.id
        ran.append(tick)
        return ctx.id
    return job


def step(clock: FakeClock, app: Conveyor, schedulers: list[Scheduler], seconds: float) -> None:
    clock.advance(seconds)
    for s in schedulers:
        s.beat()
    app.drain()


def test_tick_ids_name_the_task_and_the_utc_time() -> None:
    t = datetime(2025, 3, 9, 7, 30, tzinfo=UTC).timestamp()
    assert tick_id("tasks.cleanup", t) == "tasks.cleanup@2025-03-09T07:30:00Z"
    assert parse_tick_id("tasks.cleanup", tick_id("tasks.cleanup", t)) == t
    assert tick_id("a", 1.5) == "a@1970-01-01T00:00:01.500000Z"
    assert parse_tick_id("other", tick_id("tasks.cleanup", t)) is None
    assert parse_tick_id("tasks.cleanup", "0f3a9c") is None


def test_three_schedulers_run_each_tick_exactly_once() -> None:
    app, clock = make_app()
    ran: list[float] = []
    ledger_task(app, ran, every=10)
    schedulers = [Scheduler(app) for _ in range(3)]
    for i in range(400):  # 200 s in half-second heartbeats, schedulers in varying order
        clock.advance(0.5)
        for s in (schedulers if i % 2 else schedulers[::-1]):
            s.beat()
        app.drain()
    counts = Counter(ran)
    assert counts and max(counts.values()) == 1
    assert sorted(ran) == [ran[0] + 10 * k for k in range(len(ran))]  # none missing
    assert len(ran) == 20


def test_fractional_intervals_name_each_tick_the_same_everywhere() -> None:
    app, clock = make_app()
    ran: list[float] = []
    ledger_task(app, ran, every=2.5)
    schedulers = [Scheduler(app), Scheduler(app)]
    for _ in range(100):
        step(clock, app, schedulers, 0.5)
    assert len(ran) == 20 and len(set(ran)) == 20


def test_scheduler_calls_the_backend_only_when_a_tick_comes_due(
        monkeypatch: pytest.MonkeyPatch) -> None:
    app, clock = make_app()
    ledger_task(app, [], every=60)
    calls: list[int] = []
    real = app.backend.enqueue
    monkeypatch.setattr(app.backend, "enqueue", lambda m, now: calls.append(len(m)) or real(m, now))
    s = Scheduler(app)
    for _ in range(240):  # two minutes of heartbeats
        s.beat()
        clock.advance(0.5)
    assert calls == [2, 2, 2]  # at start, then once per tick: the next two ticks
    assert s.next_due > clock.now()


def test_first_deploy_does_not_count_as_missed_ticks() -> None:
    app, clock = make_app()
    ran: list[float] = []
    ledger_task(app, ran, "0 3 * * *", tz="UTC")  # 03:00 came and went 7 hours ago
    Scheduler(app).beat()
    assert app.drain() == 0 and ran == []
    tomorrow = datetime(2025, 3, 4, 3, 0, tzinfo=UTC).timestamp()
    found = app.backend.get_results([tick_id("t.job", tomorrow)], clock.now())
    assert found[tick_id("t.job", tomorrow)].state == SCHEDULED  # waits in the backend


def test_ticks_missed_while_no_worker_ran_run_once_when_one_returns() -> None:
    app, clock = make_app()
    ran: list[float] = []
    ledger_task(app, ran, every=60)
    s = Scheduler(app)
    s.beat()
    for _ in range(3 * 60):
        step(clock, app, [s], 1)
    assert len(ran) == 3
    # Every worker stops for ten minutes (ten ticks), then one comes back.
    clock.advance(600)
    row = Inspector(app).periodic()[0]
    assert row.waiting == ran[2] + 60 and row.last_tick == ran[2]  # due, waits for a worker
    assert "(due, waiting for a worker)" in render_periodic([row])
    back = Scheduler(app)
    back.beat()
    assert app.drain() == 2  # the two ticks written ahead: the older one is superseded
    assert len(ran) == 4 and ran[3] == ran[2] + 120  # the latest that waited runs, once, late
    for _ in range(2 * 60):
        step(clock, app, [back], 1)
    assert len(ran) == 6 and len(set(ran)) == 6


def test_catch_up_false_skips_missed_ticks() -> None:
    app, clock = make_app()
    ran: list[float] = []
    ledger_task(app, ran, every=60, catch_up=False)
    s = Scheduler(app)
    s.beat()
    for _ in range(2 * 60):
        step(clock, app, [s], 1)
    assert len(ran) == 2  # on time: run
    waiting = [tick_id("t.job", ran[-1] + 60), tick_id("t.job", ran[-1] + 120)]
    clock.advance(600)
    Scheduler(app).beat()
    app.drain()
    assert len(ran) == 2  # the late ticks were dropped
    states = app.backend.get_results(waiting, clock.now())
    assert [states[i].state for i in waiting] == [REVOKED, REVOKED]


def test_a_stalled_scheduler_enqueues_the_latest_missed_tick_once() -> None:
    app, clock = make_app()
    ran: list[float] = []
    ledger_task(app, ran, every=10)
    s = Scheduler(app)
    s.beat()
    step(clock, app, [s], 10)  # the first tick runs; the scheduler wrote the next two
    clock.advance(35)  # its heartbeat stalls past four ticks, and no worker ran either
    s.beat()
    app.drain()
    assert len(ran) == 2 and ran[1] == ran[0] + 20  # one run for them: the furthest written
    # Now the workers go on (running the two ticks written ahead, on time) while the
    # scheduler stalls past two more: it writes the latest it missed, once.
    for _ in range(2):
        clock.advance(10)
        app.drain()
    clock.advance(20)
    s.beat()
    app.drain()
    assert len(ran) == 5 and len(set(ran)) == 5 and ran[4] == ran[3] + 20


def test_a_scheduler_with_a_slow_clock_cannot_enqueue_a_tick_again() -> None:
    app, clock = make_app()
    ran: list[float] = []
    ledger_task(app, ran, every=60)
    late_clock = FakeClock(T0 - 45)  # another machine, 45 s behind, same backend
    other = Conveyor("memory://", clock=late_clock)
    other._backend = app.backend
    other.tasks, other.periodic_tasks = app.tasks, app.periodic_tasks
    s, late = Scheduler(app), Scheduler(other)
    for _ in range(300):
        clock.advance(1)
        late_clock.advance(1)
        s.beat()
        late.beat()
        app.drain()
    # 10:00 too: it was still ahead on the slow clock when that scheduler started.
    assert ran == [ran[0] + 60 * k for k in range(6)]


@pytest.mark.parametrize("overlap", [True, False])
def test_overlap(overlap: bool, caplog: pytest.LogCaptureFixture) -> None:
    app, clock = make_app(1_800_000_000.0 - 5)
    started: list[str] = []
    release = threading.Event()

    @app.periodic(every=10, overlap=overlap, bind=True, name="t.slow")
    def slow(ctx: TaskContext) -> None:
        started.append(ctx.id)
        if len(started) == 1:
            assert release.wait(10)

    s = Scheduler(app)
    s.beat()  # writes the tick at 1_800_000_000
    clock.advance(5)
    s.beat()  # and now the one after
    first = threading.Thread(target=app.drain)
    first.start()
    try:
        deadline = threading.Event()
        for _ in range(200):
            if started:
                break
            deadline.wait(0.01)
        assert len(started) == 1
        clock.advance(10)  # the next tick comes while the first still runs
        s.beat()
        with caplog.at_level(logging.WARNING, logger="conveyor.periodic"):
            assert app.drain() == 1
    finally:
        release.set()
        first.join(10)
    if overlap:
        assert len(started) == 2  # not blocked by the running one
    else:
        assert len(started) == 1
        assert "skipped: an earlier tick is still running (overlap=False)" in caplog.text
        clock.advance(10)  # the first finished and let go: the next tick runs
        s.beat()
        app.drain()
        assert len(started) == 2


def _drive(app: Conveyor, clock: FakeClock, until: float, every: float = 300) -> None:
    s = Scheduler(app)
    while clock.now() < until:
        s.beat()
        app.drain()
        clock.advance(every)


def test_spring_forward_through_the_scheduler() -> None:
    start = datetime(2025, 3, 8, 0, 0, tzinfo=NY).timestamp()  # 03-09 02:00 EST -> 03:00 EDT
    app, clock = make_app(start)
    ran: list[float] = []
    ledger_task(app, ran, "30 2 * * *", tz="America/New_York")
    _drive(app, clock, datetime(2025, 3, 10, 12, 0, tzinfo=NY).timestamp())
    local = [datetime.fromtimestamp(t, NY).strftime("%m-%d %H:%M %Z") for t in ran]
    assert local == ["03-08 02:30 EST", "03-09 03:00 EDT", "03-10 02:30 EDT"]


def test_fall_back_through_the_scheduler() -> None:
    start = datetime(2025, 11, 1, 0, 0, tzinfo=NY).timestamp()  # 11-02 02:00 EDT -> 01:00 EST
    app, clock = make_app(start)
    ran: list[float] = []
    ledger_task(app, ran, crontab(minute=30, hour=1), tz="America/New_York")
    _drive(app, clock, datetime(2025, 11, 3, 12, 0, tzinfo=NY).timestamp())
    local = [datetime.fromtimestamp(t, NY).strftime("%m-%d %H:%M %Z") for t in ran]
    assert local == ["11-01 01:30 EDT", "11-02 01:30 EDT", "11-03 01:30 EST"]


def test_scheduler_survives_a_backend_outage(monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    app, clock = make_app()
    ran: list[float] = []
    ledger_task(app, ran, every=10)
    s = Scheduler(app)
    s.beat()
    step(clock, app, [s], 10)
    assert len(ran) == 1
    real = app.backend.enqueue

    def down(messages: Any, now: float) -> list[str]:
        raise BackendUnavailable("redis://localhost:6379/0: connection refused")

    monkeypatch.setattr(app.backend, "enqueue", down)
    with caplog.at_level(logging.INFO, logger="conveyor.periodic"):
        for _ in range(120):  # a minute without a backend (no worker can claim either)
            clock.advance(0.5)
            s.beat()
        monkeypatch.setattr(app.backend, "enqueue", real)
        for _ in range(60):
            step(clock, app, [s], 0.5)
    failures = [r for r in caplog.records if "periodic scheduler failed" in r.getMessage()]
    assert len(failures) == 1
    assert "periodic scheduler works again" in caplog.text
    assert len(set(ran)) == len(ran)
    # The ticks missed during the outage ran once (the furthest one written before it, late),
    # then on schedule.
    assert ran[1] == ran[0] + 20 and ran[2] > clock.now() - 30
    assert ran[2:] == [ran[2] + 10 * k for k in range(len(ran) - 2)] and len(ran) == 5


def test_periodic_task_is_an_ordinary_task_too() -> None:
    app, _ = make_app()
    seen: list[Any] = []

    @app.periodic(every=30, args=(2,), kwargs={"b": 3})
    def add(a: int, b: int = 0) -> int:
        seen.append((a, b))
        return a + b

    @app.periodic("@hourly", bind=True)
    def bound(ctx: TaskContext, x: int = 1) -> str:
        return ctx.id

    assert add(1, 1) == 2 and bound() == "local"
    r = add.delay(5, b=5)
    assert app.drain() == 1 and seen[-1] == (5, 5)
    assert r.id not in app.periodic_tasks and r.state == "SUCCESS"
    assert set(app.periodic_tasks) == {add.name, bound.name}
    assert app.periodic_tasks[add.name].args == (2,)


def test_async_periodic_task() -> None:
    app, clock = make_app()
    ran: list[str] = []

    @app.periodic(every=5, overlap=False, bind=True)
    async def tick(ctx: TaskContext) -> None:
        ran.append(ctx.id)

    s = Scheduler(app)
    s.beat()
    for _ in range(4):
        step(clock, app, [s], 5)
    assert len(ran) == 4 and len(set(ran)) == 4


@pytest.mark.parametrize(("decorate", "error", "match"), [
    (lambda app: app.periodic("61 * * * *"), ConfigError, "bad minute field '61'"),
    (lambda app: app.periodic(every=10, args=(1, 2)), ConfigError, "too many positional"),
    (lambda app: app.periodic(every=10, kwargs={"x": object()}), SerializationError, "'x'"),
    (lambda app: app.periodic(every=10, catch_up="yes"), ConfigError, "catch_up"),
    (lambda app: app.periodic(every=10, retries=-1), ConfigError, "retries"),
    (lambda app: app.periodic(every=10, colour="red"), ConfigError, "colour"),
])
def test_bad_periodic_declarations_fail_at_decoration(
        decorate: Callable[[Conveyor], Any], error: type[Exception], match: str) -> None:
    app, _ = make_app()
    with pytest.raises(error, match=match):
        @decorate(app)
        def job(x: int = 0) -> None: ...
    assert app.tasks == {} and app.periodic_tasks == {}


def test_periodic_without_a_schedule_is_refused() -> None:
    app, _ = make_app()
    with pytest.raises(ConfigError, match="needs a schedule"):
        @app.periodic  # type: ignore[arg-type]
        def job() -> None: ...


def test_status_shows_schedule_last_run_and_next_run() -> None:
    app, clock = make_app()

    @app.periodic(every=60, name="t.ok")
    def ok() -> None: ...

    @app.periodic("*/5 * * * *", tz="UTC", name="t.bad", catch_up=False, overlap=False)
    def bad() -> None:
        raise RuntimeError("boom")

    @app.task
    def plain() -> None: ...

    s = Scheduler(app)
    s.beat()
    for _ in range(6 * 60):
        step(clock, app, [s], 1)
    now = clock.now()
    rows = {p.name: p for p in Inspector(app).periodic()}
    assert set(rows) == {"t.ok", "t.bad"}
    assert rows["t.ok"].last_state == "SUCCESS" and rows["t.ok"].schedule == "every 1m"
    assert rows["t.ok"].last_tick is not None and now - 60 <= rows["t.ok"].last_tick <= now
    assert rows["t.ok"].next_run is not None and now < rows["t.ok"].next_run <= now + 60
    assert rows["t.bad"].last_state == "FAILURE" and rows["t.bad"].schedule == "*/5 * * * * (UTC)"
    text = render_periodic(list(rows.values()))
    assert "catch_up=False overlap=False" in text and "FAILURE" in text
    status = Inspector(app).status()
    assert "periodic tasks: 2" in render_status(app.safe_url, status)
    infos = {t.name: t for t in Inspector(app).tasks()}
    assert infos["t.ok"].options["periodic"] == "'every 1m'" and not infos["t.ok"].bind
    assert "periodic" not in infos[plain.name].options
