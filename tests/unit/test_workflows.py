"""Workflows (API.md section 4) in process: signatures, chain, group, chord, link and
link_error, on memory:// through `app.drain()` and in eager mode; plus the redelivery and
concurrency cases of the chord's exactly-once callback, driven through the executor."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor import (
    FAILURE,
    PENDING,
    SUCCESS,
    ConfigError,
    Conveyor,
    EnqueueCall,
    FakeClock,
    Middleware,
    Result,
    ResultGroup,
    SerializationError,
    Signature,
    TaskFailed,
    chain,
    chord,
    group,
)
from conveyor.backends.base import Ack, Delivery
from conveyor.canvas import member_id
from conveyor.envelope import Envelope
from conveyor.worker.executor import Executor, execute


class Tasks:
    """A few tasks on one app, with a list of what ran."""

    def __init__(self, app: Conveyor) -> None:
        self.app = app
        self.ran: list[tuple[Any, ...]] = []
        ran = self.ran

        @app.task
        def add(a: int, b: int) -> int:
            ran.append(("add", a, b))
            return a + b

        @app.task
        def total(values: list[int], extra: int = 0) -> int:
            ran.append(("total", tuple(values)))
            return sum(values) + extra

        @app.task
        def boom(x: Any) -> None:
            ran.append(("boom", x))
            raise ValueError(f"boom {x}")

        @app.task
        def errback(task_id: str, exc_type: str, exc_message: str) -> list[str]:
            ran.append(("errback", task_id, exc_type, exc_message))
            return [task_id, exc_type, exc_message]

        @app.task
        def hello() -> str:
            ran.append(("hello",))
            return "hello"

        @app.task(retries=2, retry_delay=0.5)
        def flaky(x: int) -> int:
            ran.append(("flaky", x))
            if sum(1 for r in ran if r == ("flaky", x)) < 2:
                raise OSError("not yet")
            return x

        self.add, self.total, self.boom, self.errback = add, total, boom, errback
        self.hello, self.flaky = hello, flaky

    def names(self) -> list[str]:
        return [r[0] for r in self.ran]


@pytest.fixture(params=["drain", "eager"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def wapp(mode: str, clock: FakeClock) -> Iterator[Conveyor]:
    a = Conveyor("memory://", clock=clock, eager=mode == "eager")
    yield a
    a.close()


@pytest.fixture
def t(wapp: Conveyor) -> Tasks:
    return Tasks(wapp)


def run(app: Conveyor) -> None:
    if not app.eager:
        app.drain()


# --- signatures -------------------------------------------------------------------------------
def test_signature_basics(t: Tasks) -> None:
    s = t.add.s(1)
    assert isinstance(s, Signature)
    assert (s.name, s.args, s.kwargs, s.immutable) == (f"{__name__}.add", (1,), {}, False)
    assert repr(s) == f"{__name__}.add.s(1)"
    assert repr(t.add.si(1, b=2)) == f"{__name__}.add.si(1, b=2)"
    assert s(2) == 3  # called here and now, partial args first
    assert s.set(queue="q").options == {"queue": "q"}
    assert s.options == {}
    assert Signature.from_dict(t.app, s.set(priority=3, link=t.hello.si()).to_dict()) == \
        s.set(priority=3, link=[t.hello.si()])
    with pytest.raises(ConfigError, match="unknown signature option.*colour"):
        s.set(colour="red")


def test_signature_delay_prepends_args(t: Tasks) -> None:
    r = t.add.s(10).delay(5)
    run(t.app)
    assert r.get() == 15
    assert t.ran == [("add", 5, 10)]
    r = t.add.si(1, 2).delay(99)  # immutable: ignores what it is given
    run(t.app)
    assert r.get() == 3


def test_workflow_messages_are_version_2_and_plain_ones_stay_1(clock: FakeClock) -> None:
    app = Conveyor("memory://", clock=clock)
    tk = Tasks(app)
    tk.add.delay(1, 2)
    (tk.add.s(1, 2) | tk.add.s(3)).delay()
    bodies = [d.body for d in app.backend.claim(None, "w", clock.now(), 60, 10)]
    versions = [app.codec.decode(b)["v"] for b in bodies]
    assert versions == [1, 2]
    env = Envelope.from_dict(app.codec.decode(bodies[1]))
    assert env.flow is not None and env.flow["then"][0]["task"] == f"{__name__}.add"


# --- chain --------------------------------------------------------------------------------------
def test_chain_of_three_passes_each_value_on(t: Tasks) -> None:
    r = chain(t.add.s(1, 2), t.add.s(10), t.add.s(100)).delay()
    assert isinstance(r, Result)
    if not t.app.eager:
        assert r.state == PENDING  # a Result at once, for the last step's pre-assigned id
    run(t.app)
    assert r.get() == 113
    assert t.ran == [("add", 1, 2), ("add", 3, 10), ("add", 13, 100)]


def test_pipe_is_chain_and_si_ignores_the_value(t: Tasks) -> None:
    r = (t.add.s(1, 2) | t.hello.si() | t.add.si(5, 5)).delay()
    run(t.app)
    assert r.get() == 10
    assert t.names() == ["add", "hello", "add"]


def test_chain_delay_args_go_to_the_first_step(t: Tasks) -> None:
    r = (t.add.s(2) | t.add.s(3)).delay(1)
    run(t.app)
    assert r.get() == 6


def test_chain_step_options_are_kept(t: Tasks, clock: FakeClock) -> None:
    if t.app.eager:
        pytest.skip("eager mode runs at once")
    r = (t.add.s(1, 1) | t.add.s(1).set(queue="later", priority=7, countdown=30)).delay()
    t.app.drain()
    assert r.state == "SCHEDULED"
    clock.advance(31)
    assert t.app.drain(queues=["default"]) == 0
    assert t.app.drain(queues=["later"]) == 1
    assert r.get() == 3


def test_a_failing_step_stops_the_chain_with_its_error(t: Tasks) -> None:
    first = t.add.s(1, 1).set(task_id="first")
    middle = t.add.s(5).set(task_id="middle")
    r = (first | t.boom.s() | middle | t.add.s(6)).delay()
    run(t.app)
    assert t.names() == ["add", "boom"]  # nothing after the failure ran
    with pytest.raises(TaskFailed) as info:
        r.get(timeout=5)
    assert (info.value.exc_type, info.value.exc_message) == ("ValueError", "boom 2")
    assert info.value.task_name == f"{__name__}.boom"
    assert "raise ValueError" in info.value.traceback
    assert t.app.result("middle").state == FAILURE  # every later step records it
    assert t.app.result("first").get() == 2


def test_chain_link_error_is_called_once_for_the_failing_step(t: Tasks) -> None:
    r = (t.add.s(1, 1) | t.boom.s() | t.add.s(6)).apply_async(link_error=t.errback.s())
    run(t.app)
    errbacks = [x for x in t.ran if x[0] == "errback"]
    assert len(errbacks) == 1
    assert errbacks[0][2:] == ("ValueError", "boom 2")
    assert r.state == FAILURE


def test_call_site_checks(t: Tasks) -> None:
    with pytest.raises(TypeError, match="add"):
        (t.add.s(1) | t.add.s(1, 2)).delay()  # the second step would get 3 arguments
    with pytest.raises(TypeError, match="errback"):
        t.add.apply_async((1, 2), link_error=t.errback.s(1))
    with pytest.raises(SerializationError):
        (t.add.s(1, 2) | t.add.s({1, 2})).delay()
    with pytest.raises(ConfigError, match="unique_key.*cannot be used in a workflow"):
        (t.add.s(1, 2) | t.add.s(1).set(unique_key="k")).delay()
    with pytest.raises(ConfigError, match="takes signatures"):
        chain(t.add.s(1, 2), "nope")  # type: ignore[arg-type]
    assert t.ran == []
    if not t.app.eager:
        assert t.app.drain() == 0  # nothing was enqueued


# --- group --------------------------------------------------------------------------------------
def test_group_returns_values_in_order(t: Tasks) -> None:
    g = group(t.add.s(i, i) for i in range(10)).delay()
    assert isinstance(g, ResultGroup)
    run(t.app)
    assert g.get() == [2 * i for i in range(10)]
    assert g.completed_count() == 10


def test_group_of_chains_and_varargs(t: Tasks) -> None:
    g = group(t.add.s(1, 1) | t.add.s(1), t.hello.si()).delay()
    run(t.app)
    assert g.get() == [3, "hello"]


def test_chain_ending_in_a_group(t: Tasks) -> None:
    g = (t.add.s(1, 1) | group(t.add.s(10), t.add.s(20))).delay()
    assert isinstance(g, ResultGroup)
    run(t.app)
    assert g.get() == [12, 22]


# --- chord --------------------------------------------------------------------------------------
def test_chord_sums_the_group(t: Tasks) -> None:
    r = chord(group(t.add.s(i, i) for i in range(10)), t.total.s()).delay()
    run(t.app)
    assert r.get() == 90
    assert t.ran[-1] == ("total", tuple(2 * i for i in range(10)))  # group order
    assert t.names().count("total") == 1


def test_chord_of_chains_then_more_steps(t: Tasks) -> None:
    header = [t.add.s(1, 1) | t.add.s(1), t.add.s(2, 2)]
    r = (chord(header, t.total.s(extra=100)) | t.add.s(1000)).delay()
    run(t.app)
    assert r.get() == 1107


def test_group_in_the_middle_of_a_chain_is_a_chord(t: Tasks) -> None:
    r = (t.add.s(1, 1) | group(t.add.s(1), t.add.s(2)) | t.total.s()).delay()
    run(t.app)
    assert r.get() == 7  # [3, 4]


def test_two_groups_in_a_row(t: Tasks) -> None:
    r = (group(t.add.s(1, 1), t.add.s(2, 2)) | group(t.total.s(), t.total.s(extra=1))
         | t.total.s()).delay()
    run(t.app)
    assert r.get() == 13  # [6, 7]


def test_chord_immutable_callback_and_empty_header(t: Tasks) -> None:
    r = chord([t.add.s(1, 1)], t.hello.si()).delay()
    empty = chord([], t.total.s()).delay()
    run(t.app)
    assert r.get() == "hello"
    assert empty.get() == 0


def test_a_failing_member_fails_the_chord(t: Tasks) -> None:
    r = (chord([t.add.s(1, 1), t.boom.s(3), t.add.s(2, 2)], t.total.s()) | t.add.s(1)).delay()
    run(t.app)
    assert "total" not in t.names()
    with pytest.raises(TaskFailed) as info:
        r.get(timeout=5)
    assert (info.value.exc_type, info.value.exc_message) == ("ValueError", "boom 3")


def test_a_member_that_succeeds_on_retry_completes_the_chord(t: Tasks) -> None:
    r = chord([t.flaky.s(5), t.add.s(1, 1)], t.total.s()).delay()
    run(t.app)
    assert r.get() == 7
    assert t.names().count("flaky") == 2


def test_chord_members_must_store_results(wapp: Conveyor) -> None:
    @wapp.task(store_result=False)
    def quiet() -> None: ...

    @wapp.task
    def total(values: list[Any]) -> int:
        return len(values)

    with pytest.raises(ConfigError, match="store_result=False"):
        chord([quiet.si()], total.s()).delay()


# --- link / link_error --------------------------------------------------------------------------
def test_link_gets_the_value(t: Tasks) -> None:
    r = t.add.apply_async((2, 3), link=[t.add.s(1), t.add.s(2)])
    run(t.app)
    assert r.get() == 5
    assert sorted(x for x in t.ran if x != ("add", 2, 3)) == [("add", 5, 1), ("add", 5, 2)]


def test_link_error_gets_id_type_and_message(t: Tasks) -> None:
    r = t.boom.apply_async((7,), link=t.add.s(1), link_error=t.errback.s())
    run(t.app)
    assert ("errback", r.id, "ValueError", "boom 7") in t.ran
    assert "add" not in t.names()
    with pytest.raises(TaskFailed):
        r.get()


def test_signature_with_links(t: Tasks) -> None:
    r = t.add.s(1, 2).set(link=t.add.s(10)).delay()
    run(t.app)
    assert r.get() == 3
    assert ("add", 3, 10) in t.ran


# --- middleware ---------------------------------------------------------------------------------
def test_enqueue_middleware_sees_the_first_steps(clock: FakeClock) -> None:
    seen: list[str] = []

    class Spy(Middleware):
        def enqueue(self, call: EnqueueCall, call_next: Any) -> Any:
            seen.append(call.task.name)
            return call_next(call)

    app = Conveyor("memory://", clock=clock, middleware=[Spy()])
    tk = Tasks(app)
    r = chord([tk.add.s(1, 1), tk.add.s(2, 2)], tk.total.s()).delay()
    app.drain()
    assert r.get() == 6
    assert seen == [f"{__name__}.add", f"{__name__}.add"]


# --- exactly once, driven step by step ----------------------------------------------------------
def claim_all(app: Conveyor, clock: FakeClock) -> list[Delivery]:
    return app.backend.claim(None, "w", clock.now(), app.lease, 100)


def test_a_redelivered_member_does_not_enqueue_the_callback_twice(
        app: Conveyor, clock: FakeClock) -> None:
    tk = Tasks(app)
    r = chord([tk.add.s(1, 1), tk.add.s(2, 2)], tk.total.s()).delay()
    ex = Executor(app)
    first, second = claim_all(app, clock)
    app.backend.settle([execute(ex, first).settlement], clock.now())
    lost = execute(ex, second)  # it counts and enqueues the callback, then its worker dies
    assert lost.outcome == "succeeded"
    clock.advance(app.lease + 1)
    again = claim_all(app, clock)  # the callback, and the member again (lease ran out)
    ids = sorted(d.id for d in again)
    assert ids == sorted([r.id, second.id])
    member = next(d for d in again if d.id == second.id)
    app.backend.settle([execute(ex, member).settlement], clock.now())
    callback = next(d for d in again if d.id == r.id)
    app.backend.settle([execute(ex, callback).settlement], clock.now())
    assert app.drain() == 0  # no second callback anywhere
    assert r.get(timeout=5) == 6
    assert tk.names().count("total") == 1
    assert app.backend.incr(f"chord:{r.id.rsplit('-', 1)[0]}", 0, 60, clock.now()) in (0, 2)


def test_a_double_count_makes_the_callback_wait_for_the_last_member(
        app: Conveyor, clock: FakeClock) -> None:
    """A member counted twice (it crashed between counting and marking itself) lets the
    count reach the size early: the callback is enqueued, but waits for every member's
    result before it runs, then runs once with all the values."""
    tk = Tasks(app)
    r = chord([tk.add.s(1, 1), tk.add.s(2, 2), tk.add.s(3, 3)], tk.total.s()).delay()
    ex = Executor(app)
    a, b, c = claim_all(app, clock)
    chord_id = Envelope.from_dict(app.codec.decode(a.body)).flow["chord"]["id"]  # type: ignore[index]
    app.backend.incr(f"chord:{chord_id}", 1, 3600, clock.now())  # a's count before its crash
    app.backend.settle([execute(ex, a).settlement], clock.now())  # a again: unmarked, counts
    app.backend.settle([execute(ex, b).settlement], clock.now())  # 3 of 3: callback enqueued
    (callback,) = claim_all(app, clock)
    assert callback.id == r.id
    t0 = time.monotonic()
    waited = execute(ex, callback)  # c has no result yet
    assert time.monotonic() - t0 >= 0.5  # it waited in place first (JOIN_WAIT)
    assert waited.outcome == "retry" and "waiting for 1 of 3" in waited.detail
    app.backend.settle([waited.settlement], clock.now())
    app.backend.settle([execute(ex, c).settlement], clock.now())
    clock.advance(2)  # the callback's next look
    assert app.drain() == 1
    assert r.get(timeout=5) == 12
    assert tk.names().count("total") == 1


def test_members_finishing_together_on_many_threads(app: Conveyor, clock: FakeClock) -> None:
    tk = Tasks(app)
    r = chord([tk.add.s(i, 1) for i in range(50)], tk.total.s()).delay()
    ex = Executor(app)
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            start.wait()
            idle = 0
            while idle < 20:
                batch = app.backend.claim(None, threading.current_thread().name, clock.now(),
                                          app.lease, 1)
                if not batch:
                    idle += 1
                    time.sleep(0.005)
                    continue
                idle = 0
                app.backend.settle([execute(ex, batch[0]).settlement], clock.now())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert not errors
    assert r.get(timeout=5) == sum(range(1, 51))
    assert tk.names().count("total") == 1


def test_member_ids_are_derived_from_the_chord(t: Tasks) -> None:
    r = chord([t.add.s(1, 1), t.add.s(2, 2)], t.total.s().set(task_id="cb")).delay()
    run(t.app)
    assert r.id == "cb"
    assert r.get() == 6


def test_callback_fails_when_member_results_are_gone(app: Conveyor, clock: FakeClock) -> None:
    tk = Tasks(app)
    r = chord([tk.add.s(1, 1)], tk.total.s()).delay()
    ex = Executor(app)
    (member,) = claim_all(app, clock)
    execute(ex, member)  # enqueues the callback
    app.backend.settle([Ack(member.id, member.token, None)], clock.now())  # no result kept
    clock.advance(app.result_ttl + 1)
    app.drain()
    with pytest.raises(TaskFailed, match="ChordError.*1 of 1 chord members have no result"):
        r.get(timeout=5)
    assert member_id("x", 3) == "x-3"


def test_eager_results_are_finished_at_once(clock: FakeClock) -> None:
    app = Conveyor("memory://", clock=clock, eager=True)
    tk = Tasks(app)
    r = (tk.add.s(1, 1) | tk.add.s(1)).delay()
    assert r.state == SUCCESS and r.get() == 3
    assert app.backend.claim(None, "w", clock.now(), 60, 10) == []  # nothing stored
