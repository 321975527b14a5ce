"""The one conformance suite every backend passes (memory, SQLite, Redis, PostgreSQL, yours).

Subclass `BackendConformance` in a module pytest collects (name it `Test...`) and implement
`make_backend` to return a fresh, empty backend::

    class TestMyBackend(BackendConformance):
        def make_backend(self, tmp_path: Path) -> Backend:
            return MyBackend(...)

Time never comes from the wall clock: every call gets `now` from a `FakeClock` that the test
moves, so nothing here sleeps. Only `wait`/`wait_for_work`, whose timeouts are real time by
contract, take a few milliseconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from ..backends.base import (
    FAILURE,
    PENDING,
    RETRY,
    REVOKED,
    SCHEDULED,
    STARTED,
    SUCCESS,
    Ack,
    Backend,
    Bury,
    Delivery,
    Message,
    QueueStats,
    Release,
    WorkerInfo,
)
from ..clock import FakeClock

LEASE = 30.0


def msg(id: str, queue: str = "q", body: bytes | None = None, *, priority: int = 0,
        ready_at: float = 0.0, key: str | None = None, retention: float = 0.0) -> Message:
    """A message whose body defaults to its id, so a delivery shows where it came from."""
    return Message(id, queue, id.encode() if body is None else body, priority, ready_at, key,
                   retention)


class BackendConformance:
    """The backend contract as tests. Subclasses provide `make_backend`; the `backend` fixture
    closes what it made."""

    lease: float = LEASE

    def make_backend(self, tmp_path: Path) -> Backend:
        raise NotImplementedError("a conformance subclass returns a fresh, empty backend")

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[Backend]:
        b = self.make_backend(tmp_path)
        try:
            yield b
        finally:
            b.close()

    # --- helpers ----------------------------------------------------------------------------
    def put(self, backend: Backend, clock: FakeClock, *messages: Message) -> list[str]:
        return backend.enqueue(list(messages), clock.now())

    def take(self, backend: Backend, clock: FakeClock, queues: Sequence[str] | None = None,
             limit: int = 100, lease: float | None = None) -> list[Delivery]:
        return backend.claim(queues, "w1", clock.now(), self.lease if lease is None else lease,
                             limit)

    def take_one(self, backend: Backend, clock: FakeClock, queues: Sequence[str] | None = None,
                 lease: float | None = None) -> Delivery:
        got = self.take(backend, clock, queues, 1, lease)
        assert len(got) == 1, got
        return got[0]

    def state(self, backend: Backend, clock: FakeClock, id: str) -> str | None:
        found = backend.get_results([id], clock.now())
        return found[id].state if id in found else None

    @staticmethod
    def ids(deliveries: Sequence[Delivery]) -> list[str]:
        return [d.id for d in deliveries]

    @staticmethod
    def busy(stats: dict[str, QueueStats]) -> dict[str, QueueStats]:
        """Stats without all-zero queues (a backend may or may not list empty queues)."""
        return {q: s for q, s in stats.items() if s != QueueStats()}

    # --- ordering ---------------------------------------------------------------------------
    def test_fifo_within_a_priority(self, backend: Backend, clock: FakeClock) -> None:
        names = [f"m{i}" for i in range(8)]
        for n in names[:4]:
            self.put(backend, clock, msg(n))
        self.put(backend, clock, *(msg(n) for n in names[4:]))
        got = [self.take_one(backend, clock).id for _ in range(3)]
        got += self.ids(self.take(backend, clock))
        assert got == names

    def test_higher_priority_first_within_a_queue(self, backend: Backend,
                                                  clock: FakeClock) -> None:
        self.put(backend, clock, msg("low", priority=-1), msg("zero"), msg("hi1", priority=5),
                 msg("mid", priority=1), msg("hi2", priority=5), msg("zero2"))
        assert self.ids(self.take(backend, clock)) == ["hi1", "hi2", "mid", "zero", "zero2",
                                                       "low"]

    def test_higher_priority_first_across_queues(self, backend: Backend,
                                                 clock: FakeClock) -> None:
        self.put(backend, clock, msg("a0", "a"), msg("b9", "b", priority=9), msg("a5", "a",
                 priority=5), msg("b0", "b"), msg("c7", "c", priority=7), msg("a0b", "a"))
        one = [self.take_one(backend, clock, ["a", "b", "c"]).id for _ in range(3)]
        assert one == ["b9", "c7", "a5"]
        rest = self.take(backend, clock, ["a", "b"])
        assert sorted(self.ids(rest)) == ["a0", "a0b", "b0"]
        assert [d.id for d in rest if d.queue == "a"] == ["a0", "a0b"]

    def test_claim_limit(self, backend: Backend, clock: FakeClock) -> None:
        self.put(backend, clock, *(msg(f"m{i}") for i in range(5)))
        sizes = [len(self.take(backend, clock, limit=2)) for _ in range(4)]
        assert sizes == [2, 2, 1, 0]

    def test_settle_and_claim_settles_then_claims_in_order(self, backend: Backend,
                                                          clock: FakeClock) -> None:
        self.put(backend, clock, msg("a"), msg("b"), msg("c", priority=3), msg("d"))
        first = self.take(backend, clock, limit=2)
        assert self.ids(first) == ["c", "a"]
        stale = Ack("b", "not-a-token", b"x")
        done, nxt = backend.settle_and_claim(
            [Ack(first[0].id, first[0].token, b"r"), stale,
             Release(first[1].id, first[1].token, clock.now() + 100)],
            None, "w1", clock.now(), self.lease, 5)
        assert done == [True, False, True]
        assert self.ids(nxt) == ["b", "d"]
        assert self.state(backend, clock, "c") == SUCCESS
        assert self.state(backend, clock, "a") == RETRY
        done, nxt = backend.settle_and_claim([], ["q"], "w1", clock.now(), self.lease, 5)
        assert (done, nxt) == ([], [])

    def test_queue_filter(self, backend: Backend, clock: FakeClock) -> None:
        self.put(backend, clock, msg("a1", "a"), msg("b1", "b"), msg("c1", "c"), msg("a2", "a"))
        assert self.take(backend, clock, ["nope"]) == []
        assert self.take(backend, clock, []) == []
        assert self.ids(self.take(backend, clock, ["a"])) == ["a1", "a2"]
        got = self.take(backend, clock, ["b", "c"])
        assert sorted(self.ids(got)) == ["b1", "c1"]
        assert {d.id: d.queue for d in got} == {"b1": "b", "c1": "c"}
        assert self.take(backend, clock, None) == []

    def test_queues_none_claims_every_queue(self, backend: Backend, clock: FakeClock) -> None:
        self.put(backend, clock, msg("a1", "a"), msg("b1", "b"), msg("c1", "c"))
        assert sorted(self.ids(self.take(backend, clock, None))) == ["a1", "b1", "c1"]

    def test_delivery_carries_the_message(self, backend: Backend, clock: FakeClock) -> None:
        body = bytes(range(256)) * 400  # binary, NUL bytes, 100 kB
        self.put(backend, clock, msg("big", "média", body, priority=3), msg("empty", body=b""))
        d = self.take_one(backend, clock, lease=12.5)
        assert (d.id, d.queue, d.body, d.priority, d.delivery_count) == ("big", "média", body,
                                                                          3, 1)
        assert isinstance(d.token, str) and d.token
        assert d.lease_until == pytest.approx(clock.now() + 12.5)
        e = self.take_one(backend, clock)
        assert (e.body, e.queue, e.priority) == (b"", "q", 0)
        assert e.token != d.token

    # --- ready_at ---------------------------------------------------------------------------
    def test_ready_at_in_the_future_waits_for_the_clock(self, backend: Backend,
                                                         clock: FakeClock) -> None:
        t0 = clock.now()
        self.put(backend, clock, msg("later", ready_at=t0 + 10))
        assert self.take(backend, clock) == []
        assert self.state(backend, clock, "later") == SCHEDULED
        assert self.busy(backend.queue_stats(clock.now())) == {"q": QueueStats(0, 1, 0)}
        clock.advance(9.5)
        assert self.take(backend, clock) == []
        clock.set(t0 + 10)
        assert self.state(backend, clock, "later") == PENDING
        assert self.ids(self.take(backend, clock)) == ["later"]
        assert self.state(backend, clock, "later") == STARTED

    def test_a_scheduled_message_does_not_block_ready_ones(self, backend: Backend,
                                                           clock: FakeClock) -> None:
        t0 = clock.now()
        self.put(backend, clock, msg("future", priority=9, ready_at=t0 + 5), msg("now1"),
                 msg("now2", ready_at=t0))
        assert self.ids(self.take(backend, clock)) == ["now1", "now2"]
        clock.advance(5)
        assert self.ids(self.take(backend, clock)) == ["future"]

    # --- exclusivity ------------------------------------------------------------------------
    def test_concurrent_claimers_get_each_message_once(self, backend: Backend,
                                                       clock: FakeClock) -> None:
        total, threads = 240, 6
        self.put(backend, clock, *(msg(f"m{i:03}") for i in range(total)))
        barrier = threading.Barrier(threads)
        got: list[list[str]] = [[] for _ in range(threads)]
        errors: list[BaseException] = []

        def claimer(n: int) -> None:
            try:
                barrier.wait()
                while True:
                    batch = backend.claim(None, f"w{n}", clock.now(), self.lease, 1 + n % 3)
                    if not batch:
                        return
                    got[n].extend(d.id for d in batch)
                    for d in batch[::2]:
                        assert backend.ack(d.id, d.token, None, clock.now())
            except BaseException as exc:  # reported in the main thread
                errors.append(exc)

        workers = [threading.Thread(target=claimer, args=(n,)) for n in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        assert not errors, errors
        everything = [i for ids in got for i in ids]
        assert len(everything) == total
        assert sorted(everything) == [f"m{i:03}" for i in range(total)]

    def test_concurrent_enqueues_of_one_dedup_key_write_one_message(
            self, backend: Backend, clock: FakeClock) -> None:
        threads = 6
        barrier = threading.Barrier(threads)
        holders: list[str] = []
        errors: list[BaseException] = []

        def producer(n: int) -> None:
            try:
                barrier.wait()
                holders.extend(backend.enqueue([msg(f"p{n}", key="tick")], clock.now()))
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=producer, args=(n,)) for n in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        assert not errors, errors
        assert len(holders) == threads and len(set(holders)) == 1
        assert self.ids(self.take(backend, clock)) == holders[:1]

    # --- leases -----------------------------------------------------------------------------
    def test_lease_expiry_redelivers(self, backend: Backend, clock: FakeClock) -> None:
        t0 = clock.now()
        self.put(backend, clock, msg("m"))
        first = self.take_one(backend, clock, lease=10)
        assert self.busy(backend.queue_stats(clock.now())) == {"q": QueueStats(0, 0, 1)}
        clock.set(t0 + 9.5)
        assert self.take(backend, clock) == []
        clock.set(t0 + 10)
        again = self.take_one(backend, clock, lease=10)
        assert (again.id, again.body, again.delivery_count) == ("m", b"m", 2)
        assert again.token != first.token
        assert again.lease_until == pytest.approx(t0 + 20)

    def test_an_expired_lease_reads_as_retry_and_ready(self, backend: Backend,
                                                        clock: FakeClock) -> None:
        self.put(backend, clock, msg("m"))
        self.take_one(backend, clock, lease=10)
        clock.advance(11)
        assert self.state(backend, clock, "m") == RETRY
        assert self.busy(backend.queue_stats(clock.now())) == {"q": QueueStats(1, 0, 0)}

    def test_extend_keeps_the_lease_alive(self, backend: Backend, clock: FakeClock) -> None:
        t0 = clock.now()
        self.put(backend, clock, msg("a"), msg("b"))
        a, b = self.take(backend, clock, lease=10)
        clock.set(t0 + 8)
        held = backend.extend([(a.id, a.token), (b.id, "not-a-token"), ("ghost", "x")],
                              clock.now(), 10)
        assert held == {a.token}
        clock.set(t0 + 15)  # past a's first lease, inside the extended one
        assert self.ids(self.take(backend, clock, lease=10)) == ["b"]
        assert self.state(backend, clock, "a") == STARTED
        clock.set(t0 + 18)
        again = self.take_one(backend, clock)
        assert (again.id, again.delivery_count) == ("a", 2)
        assert backend.extend([(a.id, a.token)], clock.now(), 100) == set()
        assert backend.extend([], clock.now(), 100) == set()

    def test_extend_with_an_old_token_does_not_touch_the_new_lease(
            self, backend: Backend, clock: FakeClock) -> None:
        t0 = clock.now()
        self.put(backend, clock, msg("m"))
        old = self.take_one(backend, clock, lease=10)
        clock.set(t0 + 10)
        new = self.take_one(backend, clock, lease=10)
        assert backend.extend([(old.id, old.token)], clock.now(), 1000) == set()
        clock.set(t0 + 20)
        third = self.take_one(backend, clock)
        assert third.delivery_count == 3 and third.token not in (old.token, new.token)

    def test_settles_with_an_old_token_are_refused(self, backend: Backend,
                                                   clock: FakeClock) -> None:
        self.put(backend, clock, msg("m", key="k"))
        old = self.take_one(backend, clock, lease=10)
        clock.advance(10)
        new = self.take_one(backend, clock, lease=10)
        now = clock.now()
        assert backend.ack("m", old.token, b"zombie", now) is False
        assert backend.release("m", old.token, now, now, body=b"zombie") is False
        assert backend.bury("m", old.token, "zombie", now, data=b"zombie") is False
        assert self.state(backend, clock, "m") == STARTED
        assert backend.dead_letters() == []
        assert self.put(backend, clock, msg("other", key="k")) == ["m"]
        assert backend.extend([("m", new.token)], now, 10) == {new.token}
        assert backend.ack("m", new.token, b"ok", now) is True
        assert backend.ack("m", new.token, b"twice", now) is False
        assert backend.get_results(["m"], now)["m"].data == b"ok"

    def test_settles_of_unknown_ids_or_tokens_are_refused(self, backend: Backend,
                                                          clock: FakeClock) -> None:
        now = clock.now()
        assert backend.ack("ghost", "t", None, now) is False
        assert backend.release("ghost", "t", now, now) is False
        assert backend.bury("ghost", "t", "r", now) is False
        self.put(backend, clock, msg("m"))
        assert backend.ack("m", "t", None, now) is False  # queued, never claimed
        self.take_one(backend, clock)
        assert backend.bury("m", "t", "r", now) is False
        assert backend.dead_letters() == []

    def test_the_holder_may_settle_late_while_nobody_reclaimed(self, backend: Backend,
                                                               clock: FakeClock) -> None:
        """Fencing refuses a zombie whose lease was taken over, not a slow holder: until some
        claim takes the message again, its token still settles it."""
        self.put(backend, clock, msg("m"), msg("n"))
        m, n = self.take(backend, clock, lease=10)
        clock.advance(20)
        assert self.take(backend, clock, ["elsewhere"]) == []
        assert backend.extend([("n", n.token)], clock.now(), 10) == {n.token}
        assert backend.ack("m", m.token, b"late", clock.now()) is True
        assert backend.get_results(["m"], clock.now())["m"].data == b"late"
        assert self.take(backend, clock) == []  # n is held again
        clock.advance(10)
        assert self.ids(self.take(backend, clock)) == ["n"]

    # --- release ----------------------------------------------------------------------------
    def test_release_until_ready_at(self, backend: Backend, clock: FakeClock) -> None:
        t0 = clock.now()
        self.put(backend, clock, msg("m"))
        d = self.take_one(backend, clock)
        assert backend.release("m", d.token, t0 + 5, clock.now()) is True
        assert self.state(backend, clock, "m") == RETRY
        assert self.take(backend, clock) == []
        assert self.busy(backend.queue_stats(clock.now())) == {"q": QueueStats(0, 1, 0)}
        assert backend.ack("m", d.token, None, clock.now()) is False  # released: token spent
        clock.set(t0 + 5)
        again = self.take_one(backend, clock)
        assert (again.delivery_count, again.body) == (2, b"m")

    def test_release_attempted_keeps_the_count_and_goes_behind(self, backend: Backend,
                                                               clock: FakeClock) -> None:
        self.put(backend, clock, msg("a"), msg("b"))
        a = self.take_one(backend, clock)
        assert backend.release("a", a.token, clock.now(), clock.now(), body=b"a2") is True
        self.put(backend, clock, msg("c"))
        got = self.take(backend, clock)
        assert self.ids(got) == ["b", "a", "c"]
        assert (got[1].delivery_count, got[1].body) == (2, b"a2")

    def test_release_not_attempted_restores_the_count_and_place(self, backend: Backend,
                                                                clock: FakeClock) -> None:
        self.put(backend, clock, msg("a"), msg("b"))
        a = self.take_one(backend, clock)
        assert backend.release("a", a.token, clock.now(), clock.now(),
                               attempted=False) is True
        assert self.state(backend, clock, "a") == PENDING
        got = self.take(backend, clock)
        assert self.ids(got) == ["a", "b"]
        assert (got[0].delivery_count, got[0].body) == (1, b"a")

    # --- bury and the dead letters ----------------------------------------------------------
    def test_bury(self, backend: Backend, clock: FakeClock) -> None:
        self.put(backend, clock, msg("m", "mail", b"payload"))
        d = self.take_one(backend, clock)
        clock.advance(1)
        assert backend.bury("m", d.token, "unknown task 'x'", clock.now(), data=b"err") is True
        assert self.take(backend, clock) == []
        assert self.busy(backend.queue_stats(clock.now())) == {}
        [dead] = backend.dead_letters()
        assert (dead.id, dead.queue, dead.body, dead.reason, dead.delivery_count) == (
            "m", "mail", b"payload", "unknown task 'x'", 1)
        assert dead.died_at == pytest.approx(clock.now())
        found = backend.get_results(["m"], clock.now())["m"]
        assert (found.state, found.data) == (FAILURE, b"err")

    def test_a_dead_letter_outlives_its_failure_result(self, backend: Backend,
                                                       clock: FakeClock) -> None:
        self.put(backend, clock, msg("m"))
        d = self.take_one(backend, clock)
        backend.bury("m", d.token, "boom", clock.now(), data=b"err", result_ttl=10)
        clock.advance(11)
        assert self.state(backend, clock, "m") == FAILURE
        assert backend.purge_dead(["m"]) == 1
        assert self.state(backend, clock, "m") is None

    def test_dead_letters_in_order_with_paging(self, backend: Backend, clock: FakeClock) -> None:
        self.put(backend, clock, *(msg(f"m{i}") for i in range(4)))
        for d in self.take(backend, clock):
            clock.advance(1)
            backend.bury(d.id, d.token, f"r{d.id}", clock.now())
        assert [x.id for x in backend.dead_letters()] == ["m0", "m1", "m2", "m3"]
        assert [x.id for x in backend.dead_letters(limit=2)] == ["m0", "m1"]
        assert [x.id for x in backend.dead_letters(limit=2, offset=3)] == ["m3"]
        assert [x.reason for x in backend.dead_letters()] == ["rm0", "rm1", "rm2", "rm3"]

    def test_retry_dead_one(self, backend: Backend, clock: FakeClock) -> None:
        self.put(backend, clock, msg("a"), msg("b"), msg("c"))
        for d in self.take(backend, clock, limit=2):
            backend.bury(d.id, d.token, "boom", clock.now(), data=b"err")
        clock.advance(1)
        assert backend.retry_dead(["a", "c", "ghost"], clock.now()) == ["a"]
        assert self.state(backend, clock, "a") == PENDING
        assert [x.id for x in backend.dead_letters()] == ["b"]
        self.put(backend, clock, msg("d"))
        got = self.take(backend, clock)
        assert self.ids(got) == ["c", "a", "d"]  # requeued at the back
        assert got[1].delivery_count == 1
        assert backend.ack("a", got[1].token, None, clock.now()) is True
        assert self.state(backend, clock, "a") is None  # the old FAILURE result went with it

    def test_retry_dead_all(self, backend: Backend, clock: FakeClock) -> None:
        self.put(backend, clock, msg("a", "x"), msg("b", "y"), msg("c", "y"))
        for d in reversed(self.take(backend, clock)):
            clock.advance(1)
            backend.bury(d.id, d.token, "boom", clock.now(), data=b"err")
        assert [x.id for x in backend.dead_letters()] == ["c", "b", "a"]
        assert backend.retry_dead(None, clock.now()) == ["c", "b", "a"]  # in order of death
        assert backend.dead_letters() == []
        found = backend.get_results(["a", "b", "c"], clock.now())
        assert {i: r.state for i, r in found.items()} == {"a": PENDING, "b": PENDING,
                                                          "c": PENDING}
        got = self.take(backend, clock)
        assert [(d.id, d.queue) for d in got] == [("c", "y"), ("b", "y"), ("a", "x")]
        assert backend.retry_dead(None, clock.now()) == []

    def test_purge_dead(self, backend: Backend, clock: FakeClock) -> None:
        self.put(backend, clock, *(msg(f"m{i}") for i in range(3)), msg("alive"))
        for d in self.take(backend, clock, limit=3):
            backend.bury(d.id, d.token, "boom", clock.now())
        assert backend.purge_dead(["m1", "alive", "ghost"]) == 1
        assert [x.id for x in backend.dead_letters()] == ["m0", "m2"]
        assert backend.purge_dead() == 2
        assert backend.dead_letters() == []
        assert backend.purge_dead() == 0
        assert self.ids(self.take(backend, clock)) == ["alive"]

    # --- purge ------------------------------------------------------------------------------
    def test_purge_a_queue_leaves_running_messages(self, backend: Backend,
                                                   clock: FakeClock) -> None:
        t0 = clock.now()
        self.put(backend, clock, msg("run", "a"), msg("a1", "a"), msg("a2", "a"),
                 msg("later", "a", ready_at=t0 + 60), msg("b1", "b"), msg("dead", "c"))
        run = self.take_one(backend, clock, ["a"])
        dead = self.take_one(backend, clock, ["c"])
        backend.bury("dead", dead.token, "boom", clock.now())
        assert backend.purge("a", clock.now()) == 3
        assert self.busy(backend.queue_stats(clock.now())) == {"a": QueueStats(0, 0, 1),
                                                               "b": QueueStats(1, 0, 0)}
        assert self.state(backend, clock, "a1") is None
        assert backend.ack("run", run.token, b"done", clock.now()) is True
        assert backend.purge(None, clock.now()) == 1
        assert self.take(backend, clock) == []
        assert [x.id for x in backend.dead_letters()] == ["dead"]

    def test_purge_takes_messages_whose_lease_ran_out(self, backend: Backend,
                                                      clock: FakeClock) -> None:
        self.put(backend, clock, msg("lost"))
        self.take_one(backend, clock, lease=10)
        clock.advance(10)
        assert backend.purge("q", clock.now()) == 1
        assert self.take(backend, clock) == []

    # --- dedup keys -------------------------------------------------------------------------
    def test_a_held_dedup_key_returns_the_holder_and_writes_nothing(
            self, backend: Backend, clock: FakeClock) -> None:
        assert self.put(backend, clock, msg("first", key="k")) == ["first"]
        assert self.put(backend, clock, msg("second", key="k")) == ["first"]
        assert self.state(backend, clock, "second") is None
        assert self.put(backend, clock, msg("x", key="j"), msg("y", key="j")) == ["x", "x"]
        d = self.take(backend, clock)
        assert self.ids(d) == ["first", "x"]
        assert self.put(backend, clock, msg("third", key="k")) == ["first"]  # held while running
        assert self.take(backend, clock) == []

    def test_dedup_key_freed_on_ack_without_retention(self, backend: Backend,
                                                      clock: FakeClock) -> None:
        self.put(backend, clock, msg("first", key="k"))
        d = self.take_one(backend, clock)
        assert backend.ack(d.id, d.token, None, clock.now())
        assert self.put(backend, clock, msg("second", key="k")) == ["second"]
        assert self.ids(self.take(backend, clock)) == ["second"]

    def test_dedup_key_kept_for_its_retention_after_settle(self, backend: Backend,
                                                           clock: FakeClock) -> None:
        t0 = clock.now()
        self.put(backend, clock, msg("first", key="k", retention=60))
        d = self.take_one(backend, clock)
        clock.advance(5)
        assert backend.ack(d.id, d.token, b"r", clock.now())
        clock.set(t0 + 64)
        assert self.put(backend, clock, msg("second", key="k", retention=60)) == ["first"]
        clock.set(t0 + 66)
        assert self.put(backend, clock, msg("third", key="k")) == ["third"]

    def test_dedup_key_after_bury_and_purge(self, backend: Backend, clock: FakeClock) -> None:
        """Burying or purging a message settles its key like an ack: freed, or kept for the
        retention (so a purged periodic tick is not enqueued again at once)."""
        self.put(backend, clock, msg("a", key="free"), msg("b", key="kept", retention=30),
                 msg("c", key="purged"), msg("d", key="purged-kept", retention=30))
        for d in self.take(backend, clock, limit=2):
            backend.bury(d.id, d.token, "boom", clock.now())
        assert backend.purge("q", clock.now()) == 2
        assert self.put(backend, clock, msg("a2", key="free"), msg("b2", key="kept"),
                        msg("c2", key="purged"), msg("d2", key="purged-kept")) == [
            "a2", "b", "c2", "d"]
        clock.advance(31)
        assert self.put(backend, clock, msg("b3", key="kept"),
                        msg("d3", key="purged-kept")) == ["b3", "d3"]

    def test_release_keeps_the_dedup_key(self, backend: Backend, clock: FakeClock) -> None:
        self.put(backend, clock, msg("m", key="k"))
        d = self.take_one(backend, clock)
        backend.release("m", d.token, clock.now() + 10, clock.now())
        assert self.put(backend, clock, msg("n", key="k")) == ["m"]

    def test_enqueue_of_an_existing_id_writes_nothing(self, backend: Backend,
                                                      clock: FakeClock) -> None:
        self.put(backend, clock, msg("m", "a", b"one", priority=1))
        assert self.put(backend, clock, msg("m", "b", b"two", priority=9, key="k")) == ["m"]
        assert self.put(backend, clock, msg("n", key="k")) == ["n"]  # "m" did not take "k"
        got = self.take(backend, clock, None)
        assert [(d.id, d.queue, d.body) for d in got] == [("m", "a", b"one"), ("n", "q", b"n")]
        backend.bury("m", got[0].token, "boom", clock.now())
        assert self.put(backend, clock, msg("m", body=b"three")) == ["m"]
        assert self.take(backend, clock) == []
        assert [x.body for x in backend.dead_letters()] == [b"one"]

    def test_batch_enqueue_returns_ids_in_order(self, backend: Backend,
                                                clock: FakeClock) -> None:
        names = [f"m{i:02}" for i in range(50)]
        assert self.put(backend, clock, *(msg(n) for n in names)) == names
        assert self.put(backend, clock, msg("a", key="k1"), msg("b"), msg("c", key="k1"),
                        msg("a"), msg("m03", key="k2"), msg("d", key="k2")) == [
            "a", "b", "a", "a", "m03", "d"]
        assert self.ids(self.take(backend, clock)) == [*names, "a", "b", "d"]
        assert backend.enqueue([], clock.now()) == []

    # --- results ----------------------------------------------------------------------------
    def test_result_states(self, backend: Backend, clock: FakeClock) -> None:
        t0 = clock.now()
        self.put(backend, clock, msg("pending"), msg("scheduled", ready_at=t0 + 100),
                 msg("started"), msg("retry"), msg("success"), msg("failure"), msg("revoked"))
        held = {d.id: d for d in self.take(backend, clock)}
        assert set(held) == {"pending", "started", "retry", "success", "failure", "revoked"}
        backend.release("pending", held["pending"].token, t0, t0, attempted=False)
        backend.release("retry", held["retry"].token, t0, t0)
        clock.advance(1)
        backend.ack("success", held["success"].token, b"42", clock.now())
        backend.bury("failure", held["failure"].token, "boom", clock.now(), data=b"tb")
        backend.ack("revoked", held["revoked"].token, b"expired", clock.now(), state=REVOKED)
        ids = ["pending", "scheduled", "started", "retry", "success", "failure", "revoked",
               "ghost"]
        found = backend.get_results(ids, clock.now())
        assert {i: r.state for i, r in found.items()} == {
            "pending": PENDING, "scheduled": SCHEDULED, "started": STARTED, "retry": RETRY,
            "success": SUCCESS, "failure": FAILURE, "revoked": REVOKED}
        assert all(found[i].id == i for i in found)
        assert (found["success"].data, found["failure"].data) == (b"42", b"tb")
        assert found["success"].updated_at == pytest.approx(clock.now())
        assert backend.get_results([], clock.now()) == {}

    def test_ack_without_data_stores_nothing(self, backend: Backend, clock: FakeClock) -> None:
        self.put(backend, clock, msg("m"))
        d = self.take_one(backend, clock)
        assert backend.ack("m", d.token, None, clock.now())
        assert self.state(backend, clock, "m") is None

    def test_a_new_run_of_an_id_replaces_its_old_result(self, backend: Backend,
                                                        clock: FakeClock) -> None:
        self.put(backend, clock, msg("m"))
        d = self.take_one(backend, clock)
        backend.ack("m", d.token, b"first", clock.now())
        self.put(backend, clock, msg("m"))
        assert self.state(backend, clock, "m") == PENDING
        d = self.take_one(backend, clock)
        assert d.delivery_count == 1
        backend.ack("m", d.token, None, clock.now())
        assert self.state(backend, clock, "m") is None

    def test_result_ttl(self, backend: Backend, clock: FakeClock) -> None:
        t0 = clock.now()
        self.put(backend, clock, msg("short"), msg("long"))
        for d in self.take(backend, clock):
            backend.ack(d.id, d.token, b"v", t0, result_ttl=10 if d.id == "short" else 1000)
        clock.set(t0 + 9)
        assert set(backend.get_results(["short", "long"], clock.now())) == {"short", "long"}
        clock.set(t0 + 11)
        assert set(backend.get_results(["short", "long"], clock.now())) == {"long"}

    def test_wait_returns_at_once_for_finished_ids(self, backend: Backend,
                                                   clock: FakeClock) -> None:
        self.put(backend, clock, msg("ok"), msg("bad"))
        for d in self.take(backend, clock):
            if d.id == "ok":
                backend.ack(d.id, d.token, b"1", clock.now())
            else:
                backend.bury(d.id, d.token, "boom", clock.now())
        started = time.monotonic()
        found = backend.wait(["ok", "bad"], None, clock.now)
        assert time.monotonic() - started < 2.0
        assert {i: r.state for i, r in found.items()} == {"ok": SUCCESS, "bad": FAILURE}
        assert found["ok"].data == b"1"

    def test_wait_gives_up_after_its_timeout(self, backend: Backend, clock: FakeClock) -> None:
        self.put(backend, clock, msg("done"))
        d = self.take_one(backend, clock)
        backend.ack(d.id, d.token, b"1", clock.now())
        self.put(backend, clock, msg("waiting"))
        started = time.monotonic()
        found = backend.wait(["waiting", "done", "ghost"], 0, clock.now)
        assert time.monotonic() - started < 2.0
        assert {i: r.state for i, r in found.items()} == {"waiting": PENDING, "done": SUCCESS}
        started = time.monotonic()
        found = backend.wait(["waiting"], 0.05, clock.now)
        assert 0.04 <= time.monotonic() - started < 5.0
        assert found["waiting"].state == PENDING

    def test_wait_for_work_returns_within_its_timeout(self, backend: Backend,
                                                      clock: FakeClock) -> None:
        started = time.monotonic()
        backend.wait_for_work(["q"], 0)
        backend.wait_for_work(None, 0.01)
        assert time.monotonic() - started < 5.0

    # --- locks and counters -----------------------------------------------------------------
    def test_lock_ownership_renewal_and_expiry(self, backend: Backend, clock: FakeClock) -> None:
        t0 = clock.now()
        assert backend.try_lock("k", "alice", 10, t0) is True
        assert backend.try_lock("k", "bob", 10, t0 + 1) is False
        assert backend.try_lock("other", "bob", 10, t0 + 1) is True
        assert backend.try_lock("k", "alice", 10, t0 + 5) is True  # renewed until t0 + 15
        assert backend.try_lock("k", "bob", 10, t0 + 12) is False
        assert backend.try_lock("k", "bob", 10, t0 + 15) is True  # alice's lock ran out
        assert backend.try_lock("k", "alice", 10, t0 + 16) is False

    def test_unlock_only_by_the_owner(self, backend: Backend, clock: FakeClock) -> None:
        now = clock.now()
        assert backend.try_lock("k", "alice", 100, now)
        assert backend.unlock("k", "bob") is False
        assert backend.try_lock("k", "bob", 100, now) is False
        assert backend.unlock("k", "alice") is True
        assert backend.unlock("k", "alice") is False
        assert backend.unlock("never", "alice") is False
        assert backend.try_lock("k", "bob", 100, now) is True

    def test_incr_windows(self, backend: Backend, clock: FakeClock) -> None:
        t0 = clock.now()
        assert backend.incr("rate", 1, 10, t0) == 1
        assert backend.incr("rate", 2, 10, t0 + 5) == 3
        assert backend.incr("other", 1, 10, t0 + 5) == 1
        assert backend.incr("rate", 1, 10, t0 + 9.5) == 4  # the window does not slide
        assert backend.incr("rate", 1, 10, t0 + 10) == 1  # a new window from here
        assert backend.incr("rate", 1, 10, t0 + 19) == 2
        assert backend.incr("chord", 3, 100, t0) == 3
        assert backend.incr("chord", -1, 100, t0) == 2

    def test_concurrent_incr_loses_no_update(self, backend: Backend, clock: FakeClock) -> None:
        threads, each = 4, 25
        barrier = threading.Barrier(threads)
        seen: list[int] = []

        def bump() -> None:
            barrier.wait()
            for _ in range(each):
                seen.append(backend.incr("n", 1, 1000, clock.now()))

        workers = [threading.Thread(target=bump) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        assert sorted(seen) == list(range(1, threads * each + 1))

    # --- administration ---------------------------------------------------------------------
    def test_queue_stats(self, backend: Backend, clock: FakeClock) -> None:
        t0 = clock.now()
        self.put(backend, clock, msg("run", "a"), msg("a1", "a"), msg("a2", "a"),
                 msg("a3", "a", ready_at=t0 + 5), msg("b1", "b"), msg("dead", "c"))
        self.take_one(backend, clock, ["a"])
        d = self.take_one(backend, clock, ["c"])
        backend.bury(d.id, d.token, "boom", clock.now())
        assert self.busy(backend.queue_stats(clock.now())) == {
            "a": QueueStats(ready=2, scheduled=1, running=1), "b": QueueStats(ready=1)}
        assert self.busy(backend.queue_stats(t0 + 5)) == {
            "a": QueueStats(ready=3, scheduled=0, running=1), "b": QueueStats(ready=1)}

    def test_workers_registry(self, backend: Backend, clock: FakeClock) -> None:
        t0 = clock.now()
        backend.put_worker(WorkerInfo("w2", {"pid": 2, "queues": ["a", "b"]}), t0, 10)
        backend.put_worker(WorkerInfo("w1", {"pid": 1}), t0, 10)
        seen = backend.workers(t0 + 1)
        assert [(w.id, w.info) for w in seen] == [("w1", {"pid": 1}),
                                                  ("w2", {"pid": 2, "queues": ["a", "b"]})]
        assert seen[0].last_seen == pytest.approx(t0)
        backend.put_worker(WorkerInfo("w1", {"pid": 1, "busy": 3}), t0 + 5, 10)
        seen = backend.workers(t0 + 12)
        assert [(w.id, w.info) for w in seen] == [("w1", {"pid": 1, "busy": 3})]
        assert seen[0].last_seen == pytest.approx(t0 + 5)
        backend.remove_worker("w1")
        backend.remove_worker("ghost")
        assert backend.workers(t0 + 12) == []

    def test_housekeeping_keeps_what_has_not_expired(self, backend: Backend,
                                                     clock: FakeClock) -> None:
        t0 = clock.now()
        self.fill_expiring(backend, clock, 100)
        backend.housekeeping(t0 + 50)
        self.assert_expiring_present(backend, t0 + 1, present=True)

    def test_housekeeping_drops_expired_rows(self, backend: Backend, clock: FakeClock) -> None:
        """Dropped rows are seen by reading with an earlier `now`: only deletion explains
        their absence then."""
        t0 = clock.now()
        self.fill_expiring(backend, clock, 10)
        backend.housekeeping(t0 + 20)
        self.assert_expiring_present(backend, t0 + 1, present=False)
        backend.housekeeping(t0 + 20)  # nothing left to do is fine

    def fill_expiring(self, backend: Backend, clock: FakeClock, ttl: float) -> None:
        now = clock.now()
        self.put(backend, clock, msg("r", key="k", retention=ttl))
        d = self.take_one(backend, clock)
        backend.ack("r", d.token, b"v", now, result_ttl=ttl)
        assert backend.try_lock("lock", "alice", ttl, now)
        assert backend.incr("count", 5, ttl, now) == 5
        backend.put_worker(WorkerInfo("w", {}), now, ttl)

    def assert_expiring_present(self, backend: Backend, now: float, present: bool) -> None:
        assert ("r" in backend.get_results(["r"], now)) is present
        assert backend.try_lock("lock", "bob", 1, now) is not present
        assert backend.incr("count", 1, 100, now) == (6 if present else 1)
        assert bool(backend.workers(now)) is present
        holder = backend.enqueue([msg("r2", key="k")], now)
        assert holder == (["r"] if present else ["r2"])

    def test_settle_a_mixed_batch(self, backend: Backend, clock: FakeClock) -> None:
        self.put(backend, clock, msg("a"), msg("b"), msg("c"), msg("d"))
        a, b, c, d = self.take(backend, clock)
        now = clock.now()
        assert backend.settle([
            Ack("a", a.token, b"1"),
            Release("b", b.token, now + 5, b"b2"),
            Bury("c", c.token, "boom", b"tb"),
            Ack("d", "not-the-token"),
            Ack("ghost", "x"),
            Ack("a", a.token, b"again"),
        ], now) == [True, True, True, False, False, False]
        found = backend.get_results(["a", "b", "c", "d"], now)
        assert {i: r.state for i, r in found.items()} == {"a": SUCCESS, "b": RETRY,
                                                          "c": FAILURE, "d": STARTED}
        assert found["a"].data == b"1"
        assert backend.settle([], now) == []
        clock.advance(5)
        again = self.take_one(backend, clock)
        assert (again.id, again.body) == ("b", b"b2")
