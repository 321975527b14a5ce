"""Settles: burial and dead letters, purge, dedup keys."""

from __future__ import annotations

import pytest

from ...backends.base import (
    FAILURE,
    PENDING,
    Backend,
    QueueStats,
)
from ...clock import FakeClock
from .base import ConformanceBase, msg


class SettlingConformance(ConformanceBase):
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
        assert backend.count_dead() == 3
        assert backend.purge_dead(["m1", "alive", "ghost"]) == 1
        assert [x.id for x in backend.dead_letters()] == ["m0", "m2"]
        assert backend.count_dead() == 2
        assert backend.purge_dead() == 2
        assert backend.dead_letters() == []
        assert backend.count_dead() == 0
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
