"""conveyor.contrib.uwsgi: the Spooler's decorators, return codes and special keys, run with
app.drain() on memory:// and a fake clock, and in eager mode."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor import FAILURE, SUCCESS, ConfigError, Conveyor, FakeClock
from conveyor.contrib.uwsgi import SPOOL_IGNORE, SPOOL_OK, SPOOL_RETRY, Spooler


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=time.time())


@pytest.fixture
def app(clock: FakeClock) -> Iterator[Conveyor]:
    a = Conveyor("memory://", clock=clock)
    yield a
    a.close()


@pytest.fixture
def spooler(app: Conveyor) -> Spooler:
    return Spooler(app, frequency=30)


def test_codes_have_uwsgi_values() -> None:
    assert (SPOOL_OK, SPOOL_RETRY, SPOOL_IGNORE) == (-2, -1, 0)


def test_spool_passes_one_dict_and_is_done(app: Conveyor, spooler: Spooler) -> None:
    seen: list[dict[str, Any]] = []

    @spooler.spool
    def encode(arguments: dict[str, Any]) -> str:
        seen.append(arguments)
        return "ignored"

    r = encode.spool({"filename": "a.mp4"}, quality="hd")
    r2 = encode(filename=b"b.mp4")  # calling it spools too; bytes arrive as str
    assert seen == []  # enqueued, not run here
    assert app.drain() == 2
    assert seen[0]["filename"] == "a.mp4" and seen[0]["quality"] == "hd"
    assert seen[0]["spooler_task_name"] == r.id
    assert seen[0]["ud_spool_func"] == "encode"
    assert seen[1]["filename"] == "b.mp4"
    assert r.get() == SPOOL_OK and r2.state == SUCCESS
    assert encode.name == f"{__name__}.encode"


def test_pass_arguments_calls_with_the_arguments(app: Conveyor, spooler: Spooler) -> None:
    calls: list[tuple[Any, ...]] = []

    @spooler.spool(pass_arguments=True)
    def add(a: int, b: int = 0) -> None:
        calls.append((a, b))

    add.spool(1, b=2, priority=3)  # special keys are not passed on
    add(5)
    app.drain()
    assert sorted(calls) == [(1, 2), (5, 0)]
    with pytest.raises(TypeError):
        add.spool(1, 2, 3)  # does not fit the function: nothing enqueued
    assert app.drain() == 0


def test_spool_retries_on_exception_after_frequency(app: Conveyor, spooler: Spooler,
                                                     clock: FakeClock) -> None:
    attempts: list[float] = []

    @spooler.spool
    def flaky(arguments: dict[str, Any]) -> None:
        attempts.append(clock.now())
        if len(attempts) < 3:
            raise OSError("disk busy")

    r = flaky.spool(x="1")
    app.drain()  # waits (on the fake clock) for the retries, like the spooler's next scans
    assert len(attempts) == 3
    assert attempts[1] - attempts[0] == pytest.approx(30)
    assert r.get() == SPOOL_OK


def test_bounded_retries_end_in_failure(app: Conveyor) -> None:
    spooler = Spooler(app, frequency=1, retries=2)

    @spooler.spool
    def broken(arguments: dict[str, Any]) -> None:
        raise ValueError("nope")

    r = broken.spool()
    app.drain()
    assert r.state == FAILURE
    failure = r.get(propagate=False)
    assert failure.exc_type == "ValueError"


def test_spoolraw_codes(app: Conveyor, spooler: Spooler, clock: FakeClock) -> None:
    runs: list[str] = []

    @spooler.spoolraw
    def job(arguments: dict[str, Any]) -> int:
        runs.append(arguments["what"])
        return {"ok": SPOOL_OK, "ignore": SPOOL_IGNORE}.get(arguments["what"], SPOOL_RETRY)

    ok = job.spool(what="ok")
    ignored = job.spool(what="ignore")
    again = job.spool(what="again")
    assert app.drain() == 3
    assert ok.get() == SPOOL_OK
    # SPOOL_IGNORE: kept aside (dead letters), not run again
    assert ignored.state == FAILURE
    assert any("SPOOL_IGNORE" in d.reason for d in app.backend.dead_letters())
    # SPOOL_RETRY: this run is over, the same spool runs again after `frequency`
    assert again.get() == SPOOL_RETRY
    assert app.drain() == 0  # not before its time
    clock.advance(31)
    assert app.drain() == 1
    assert runs.count("again") == 2


def test_spoolraw_must_return_a_code(app: Conveyor) -> None:
    spooler = Spooler(app, frequency=0, retries=1)

    @spooler.spoolraw
    def forgot(arguments: dict[str, Any]) -> None:
        return None

    r = forgot.spool()
    app.drain()
    failure = r.get(propagate=False)
    assert failure.exc_type == "TypeError" and "SPOOL_OK" in failure.exc_message


def test_spoolforever_repeats(app: Conveyor, spooler: Spooler, clock: FakeClock) -> None:
    runs: list[str] = []

    @spooler.spoolforever(pass_arguments=True)
    def poll(feed: str) -> None:
        runs.append(feed)

    poll.spool("news")
    for _ in range(3):
        app.drain()
        clock.advance(30)
    assert runs == ["news"] * 3


def test_at_priority_body_and_spooler_keys(app: Conveyor, spooler: Spooler,
                                           clock: FakeClock) -> None:
    seen: list[dict[str, Any]] = []

    @spooler.spool
    def job(arguments: dict[str, Any]) -> None:
        seen.append(arguments)

    job.spool(name="later", at=str(int(clock.now()) + 100))
    job.spool(name="low", priority="9")
    job.spool(name="high", priority=1, body=b"\x00\xffbinary")
    job.spool(name="other-queue", spooler="slow")
    app.drain(queues=["default"])
    assert [a["name"] for a in seen] == ["high", "low"]  # lower uWSGI priority first
    assert seen[0]["body"] == b"\x00\xffbinary"
    clock.advance(101)
    app.drain(queues=["default"])
    assert seen[-1]["name"] == "later"
    app.drain(queues=["slow"])
    assert seen[-1]["name"] == "other-queue"


def test_timer_and_cron_are_periodic_tasks(app: Conveyor, spooler: Spooler) -> None:
    got: list[int] = []

    @spooler.timer(30)
    def tick(signum: int) -> None:
        got.append(signum)

    @spooler.cron(0, -1, -1, -1, -1, signum=7)
    def hourly(signum: int) -> None:
        got.append(signum)

    assert app.periodic_tasks[tick.name].schedule.describe()
    assert "0 * * * *" in app.periodic_tasks[hourly.name].schedule.describe()
    assert app.periodic_tasks[tick.name].args == (0,)
    tick.delay(0)
    hourly.delay(7)
    app.drain()
    assert sorted(got) == [0, 7]


def test_eager_mode_runs_once_and_fails_at_once() -> None:
    app = Conveyor("memory://", eager=True)
    spooler = Spooler(app)
    runs: list[int] = []

    @spooler.spoolforever
    def forever(arguments: dict[str, Any]) -> None:
        runs.append(1)

    @spooler.spool
    def broken(arguments: dict[str, Any]) -> None:
        raise RuntimeError("boom")

    assert forever.spool().get() == SPOOL_RETRY
    assert runs == [1]
    assert broken.spool().get(propagate=False).exc_type == "RuntimeError"


def test_an_app_is_required() -> None:
    with pytest.raises(ConfigError):
        Spooler(None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        Spooler(Conveyor("memory://"), bind=True)
