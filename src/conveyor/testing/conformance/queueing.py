"""Claims: ordering, ready_at, exclusivity, leases and release."""

from __future__ import annotations

import threading

import pytest

from ...backends.base import (
    PENDING,
    RETRY,
    SCHEDULED,
    STARTED,
    SUCCESS,
    Ack,
    Backend,
    QueueStats,
    Release,
)
from ...clock import FakeClock
from .base import ConformanceBase, msg


class QueueingConformance(ConformanceBase):
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
