"""Rate and concurrency limits and soft time limits, in process on the memory backend with a
FakeClock: option checks, window arithmetic, the gate's slots and give-backs, the slot loop."""

from __future__ import annotations

import collections
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor import ConfigError, Conveyor, FakeClock, TaskTimeout
from conveyor.backends.base import Release
from conveyor.ratelimit import RateLimit, parse_rate, slot_keys
from conveyor.worker import timeouts
from conveyor.worker.consumer import Held, Slot
from conveyor.worker.executor import Executor, Finished, Prepared
from conveyor.worker.limits import PROCESS, Gate, free_slots, renew_slots


def work(x: int) -> int:
    return x


# --- options --------------------------------------------------------------------------------
@pytest.mark.parametrize("text, limit, period", [
    ("10/s", 10, 1), ("100/m", 100, 60), ("5/h", 5, 3600), (" 7 / min ", 7, 60),
    ("1/second", 1, 1), ("3/hour", 3, 3600), ("2/sec", 2, 1),
])
def test_rate_limits_parse(text: str, limit: int, period: int) -> None:
    rate = parse_rate(text)
    assert rate is not None and (rate.limit, rate.period) == (limit, period)


@pytest.mark.parametrize("bad", ["10", "10/d", "0/s", "-1/s", "1.5/s", "ten/s", "10/ms", 10,
                                 ("10", "s"), True])
def test_a_bad_rate_limit_is_named_at_decoration(app: Conveyor, bad: Any) -> None:
    with pytest.raises(ConfigError, match=rf"rate_limit={bad!r}".replace("(", r"\(")
                       .replace(")", r"\)")):
        app.task(rate_limit=bad)(work)
    assert app.tasks == {}


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_a_bad_concurrency_is_named(app: Conveyor, bad: Any) -> None:
    with pytest.raises(ConfigError, match="concurrency"):
        app.task(concurrency=bad)(work)


def test_concurrency_key_needs_concurrency_and_a_callable(app: Conveyor) -> None:
    with pytest.raises(ConfigError, match="concurrency_key needs concurrency"):
        app.task(concurrency_key=lambda a, k: "x")(work)
    with pytest.raises(ConfigError, match="callable"):
        app.task(concurrency=1, concurrency_key="customer")(work)


def test_soft_timeout_must_be_below_timeout(app: Conveyor) -> None:
    with pytest.raises(ConfigError, match=r"soft_timeout \(5s\) must be less than timeout"):
        app.task(soft_timeout=5, timeout=5)(work)
    with pytest.raises(ConfigError, match="soft_timeout"):
        app.task(soft_timeout=0)(work)
    t = app.task(soft_timeout=1.5, timeout=3)(work)
    assert t.options.limits is not None and t.options.limits.soft_timeout == 1.5


def test_limits_are_options_of_the_task(app: Conveyor) -> None:
    t = app.task(name="t.l", rate_limit="100/m", concurrency=4,
                 concurrency_key=lambda args, kwargs: args[0])(work)
    lim = t.options.limits
    assert lim is not None and lim.rate == RateLimit(100, 60, "100/m") and lim.concurrency == 4
    assert app.task(name="t.plain", rate_limit=None, concurrency=None)(work).options.limits is None


# --- window arithmetic ----------------------------------------------------------------------
def test_windows_and_where_refused_starts_go() -> None:
    rate = RateLimit(10, 1)
    assert rate.window(1000.0) == 1000 and rate.window(1000.999) == 1000
    assert rate.window(1001.0) == 1001
    assert rate.admits(10) and not rate.admits(11)
    # The 1st..10th refused in window 1000 take the 10 places of window 1001, evenly spread;
    # the 11th..20th those of window 1002.
    assert rate.defer_until(1000, 11) == pytest.approx(1001.0)
    assert rate.defer_until(1000, 12) == pytest.approx(1001.1)
    assert rate.defer_until(1000, 20) == pytest.approx(1001.9)
    assert rate.defer_until(1000, 21) == pytest.approx(1002.0)
    per_minute = RateLimit(100, 60)
    assert per_minute.defer_until(per_minute.window(6000.5), 101) == 6060.0
    assert slot_keys("t", 2) == ["conc:t:0", "conc:t:1"]
    assert slot_keys("t", 1, "acme") == ["conc:t:acme:0"]


# --- the gate ---------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _forget_process_state() -> Iterator[None]:
    yield
    with PROCESS.lock:
        PROCESS.held.clear()
        PROCESS.refusals.clear()
        PROCESS.durations.clear()


def claim_prepared(app: Conveyor, n: int) -> list[Prepared]:
    executor = Executor(app)
    out = []
    for d in app.backend.claim(None, "w", app.clock.now(), app.lease, n):
        p = executor.prepare(d)
        assert isinstance(p, Prepared)
        out.append(p)
    return out


def test_a_rate_window_admits_its_limit_and_spreads_the_rest(app: Conveyor,
                                                              clock: FakeClock) -> None:
    clock.set(1_700_000_000.25)
    t = app.task(name="t.rated", rate_limit="10/s")(work)
    t.map([(i,) for i in range(25)])
    gate = Gate(app, app.backend)
    outcomes = [gate.admit(p) for p in claim_prepared(app, 25)]
    admitted = [o for o in outcomes if o is None]
    deferred = [o for o in outcomes if o is not None]
    assert len(admitted) == 10 and len(deferred) == 15
    releases = [o.settlement for o in deferred]
    assert all(isinstance(r, Release) and not r.attempted for r in releases)
    at = sorted(r.ready_at for r in releases if isinstance(r, Release))
    assert at[:10] == pytest.approx([1_700_000_001 + i / 10 for i in range(10)])
    assert at[10:] == pytest.approx([1_700_000_002 + i / 10 for i in range(5)])


def test_a_deferred_start_is_given_back_uncounted_and_waits(app: Conveyor,
                                                             clock: FakeClock) -> None:
    clock.set(1_700_000_000.5)
    t = app.task(name="t.once", rate_limit="1/s")(work)
    first, second = t.delay(1), t.delay(2)
    gate = Gate(app, app.backend)
    a, b = claim_prepared(app, 2)
    assert gate.admit(a) is None
    fin = gate.admit(b)
    assert fin is not None and fin.outcome == "deferred"
    assert app.backend.settle([fin.settlement], clock.now()) == [True]
    assert second.state == "PENDING" or second.state == "SCHEDULED"
    assert app.backend.claim(None, "w", clock.now(), app.lease, 5) == []  # no spinning
    clock.set(1_700_000_001.0)
    (again,) = app.backend.claim(None, "w", clock.now(), app.lease, 5)
    assert again.id == second.id and again.delivery_count == 1  # the give-back did not count
    assert first.id != second.id


def test_concurrency_slots_are_held_renewed_and_freed(app: Conveyor, clock: FakeClock) -> None:
    t = app.task(name="t.conc", concurrency=2)(work)
    t.map([(i,) for i in range(3)])
    gate = Gate(app, app.backend)
    p1, p2, p3 = claim_prepared(app, 3)
    assert gate.admit(p1) is None and gate.admit(p2) is None
    busy = gate.admit(p3)
    assert busy is not None and isinstance(busy.settlement, Release)
    wait = busy.settlement.ready_at - clock.now()
    assert 0.03 <= wait <= 0.07, "a short first wait, not a hot loop"
    # Both slots are held by the two deliveries; renewing keeps them past the first lease.
    clock.advance(app.lease * 0.9)
    renew_slots(app, app.backend, [p1.delivery.id, p2.delivery.id], clock.now())
    clock.advance(app.lease * 0.9)
    assert not any(app.backend.try_lock(k, "other", 1, clock.now())
                   for k in slot_keys("t.conc", 2))
    gate.release(p1)
    assert gate.admit(p3) is None
    # A holder that stops renewing (its worker died) frees its slot when the lease ends.
    clock.advance(app.lease + 0.1)
    assert app.backend.try_lock(PROCESS.held[p2.delivery.id][0], "other", 1, clock.now())


def test_refusals_back_off(app: Conveyor) -> None:
    t = app.task(name="t.one", concurrency=1)(work)
    t.map([(i,) for i in range(8)])
    gate = Gate(app, app.backend)
    first, *rest = claim_prepared(app, 8)
    assert gate.admit(first) is None
    waits = []
    for p in rest:
        fin = gate.admit(p)
        assert fin is not None and isinstance(fin.settlement, Release)
        waits.append(fin.settlement.ready_at - app.clock.now())
    assert waits[-1] > 3 * waits[0]
    assert max(waits) <= 1.0 * 1.25  # capped by the task's expected run time


def test_concurrency_key_limits_per_key(app: Conveyor) -> None:
    t = app.task(name="t.cust", concurrency=1,
                 concurrency_key=lambda args, kwargs: args[0])(lambda customer, i: i)
    t.map([("acme", 1), ("acme", 2), ("globex", 3)])
    gate = Gate(app, app.backend)
    a1, a2, g1 = claim_prepared(app, 3)
    assert gate.admit(a1) is None
    assert gate.admit(a2) is not None
    assert gate.admit(g1) is None
    assert PROCESS.held[g1.delivery.id][0] == "conc:t.cust:globex:0"


def test_a_failing_concurrency_key_fails_the_task(app: Conveyor) -> None:
    def broken(args: list[Any], kwargs: dict[str, Any]) -> str:
        raise KeyError("customer")

    t = app.task(name="t.broken", concurrency=1, concurrency_key=broken)(work)
    t.delay(1)
    (p,) = claim_prepared(app, 1)
    fin = Gate(app, app.backend).admit(p)
    assert fin is not None and fin.outcome == "failed" and "concurrency_key" in fin.detail


def test_the_supervisor_frees_a_dead_childs_slot(app: Conveyor) -> None:
    t = app.task(name="t.solo", concurrency=1)(work)
    t.delay(1)
    (p,) = claim_prepared(app, 1)
    assert Gate(app, app.backend).admit(p) is None
    free_slots(app, "t.solo", p.delivery.id, p.delivery.token)
    assert app.backend.try_lock("conc:t.solo:0", "other", 1, app.clock.now())


# --- the slot loop ----------------------------------------------------------------------------
def test_a_slot_runs_other_work_while_limited_tasks_wait(clock: FakeClock) -> None:
    app = Conveyor("memory://", clock=clock)
    clock.set(1_700_000_000.5)
    ran: list[tuple[str, float]] = []

    @app.task(name="t.rated", rate_limit="10/s")
    def rated(i: int) -> None:
        ran.append(("rated", clock.now()))

    @app.task(name="t.free")
    def free() -> None:
        ran.append(("free", clock.now()))

    rated.map([(i,) for i in range(30)])
    free.delay()
    slot = Slot(app, app.backend, None, "w", Held(), threading.Event(), max_tasks=11)
    assert slot.run() == 11
    assert [k for k, _ in ran].count("free") == 1
    for _ in range(2):
        clock.set(clock.now() // 1 + 1.95)  # the whole next window is due
        slot.max_tasks = slot.done + 10
        slot.run()
    per_window = collections.Counter(int(t) for k, t in ran if k == "rated")
    assert sorted(per_window.values()) == [10, 10, 10]


# --- soft time limits -------------------------------------------------------------------------
@pytest.fixture
def restore_timeouts() -> Iterator[None]:
    old_mode, old_handler = timeouts._mode, signal.getsignal(signal.SIGALRM)
    yield
    timeouts._mode = old_mode
    signal.signal(signal.SIGALRM, old_handler)
    signal.setitimer(signal.ITIMER_REAL, 0)


def run_once(app: Conveyor) -> Finished:
    executor = Executor(app)
    (d,) = app.backend.claim(None, "w", app.clock.now(), app.lease, 1)
    p = executor.prepare(d)
    assert isinstance(p, Prepared)
    return executor.run(p)


def test_soft_timeout_by_signal_lets_the_task_clean_up(restore_timeouts: None) -> None:
    app = Conveyor("memory://")
    cleaned = []

    @app.task(name="t.sleepy", soft_timeout=0.1, timeout=5, bind=True)
    def sleepy(ctx: Any) -> str:
        try:
            time.sleep(5)
        except TaskTimeout as exc:
            cleaned.append((str(exc), ctx.cancelled))
            return "cleaned up"
        return "slept"

    timeouts.use_signals()
    sleepy.delay()
    t0 = time.monotonic()
    fin = run_once(app)
    assert time.monotonic() - t0 < 2
    assert fin.outcome == "succeeded"
    assert cleaned == [("t.sleepy ran past its soft timeout of 0.1s", True)]
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_soft_timeout_in_a_thread_is_best_effort_injection(restore_timeouts: None) -> None:
    app = Conveyor("memory://")

    @app.task(name="t.busy", soft_timeout=0.1, bind=True)
    def busy(ctx: Any) -> None:
        while True:  # Python code between short sleeps: the injection lands here
            time.sleep(0.01)

    timeouts.use_threads()
    busy.delay()
    result: list[Finished] = []
    worker = threading.Thread(target=lambda: result.append(run_once(app)))
    worker.start()
    deadline = time.monotonic() + 5
    while worker.is_alive() and time.monotonic() < deadline:
        timeouts.fire_due(time.monotonic())
        time.sleep(0.02)
    worker.join(1)
    assert result, "the injected TaskTimeout did not stop the task"
    (fin,) = result
    assert fin.outcome == "failed", fin
    assert "TaskTimeout: t.busy ran past its soft timeout of 0.1s" in fin.detail
    assert timeouts._running == {}


def test_no_injection_outside_the_task(restore_timeouts: None) -> None:
    app = Conveyor("memory://")

    @app.task(name="t.quick", soft_timeout=0.05)
    def quick() -> int:
        return 1

    timeouts.use_threads()
    quick.delay()
    fin = run_once(app)
    time.sleep(0.1)
    timeouts.fire_due(time.monotonic())  # the task is over: nothing to interrupt
    time.sleep(0.01)
    assert fin.outcome == "succeeded"


def test_drain_and_eager_ignore_time_limits(restore_timeouts: None) -> None:
    timeouts._mode = None
    app = Conveyor("memory://")

    @app.task(name="t.e", soft_timeout=0.01, rate_limit="1/h", concurrency=1)
    def e() -> int:
        time.sleep(0.05)
        return 2

    results = e.map([(), ()])
    assert app.drain() == 2
    assert results.get(timeout=1) == [2, 2]
