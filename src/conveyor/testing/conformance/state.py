"""Results, locks and counters, administration."""

from __future__ import annotations

import threading
import time

import pytest

from ...backends.base import (
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
    QueueStats,
    Release,
    WorkerInfo,
)
from ...clock import FakeClock
from .base import ConformanceBase, msg


class StateConformance(ConformanceBase):
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

    def test_wait_is_woken_when_a_result_is_stored(self, backend: Backend,
                                                   clock: FakeClock) -> None:
        """A waiting caller hears of the ack from another thread (or machine) long before its
        timeout: backends with notifications are woken, polling ones poll often enough."""
        self.put(backend, clock, msg("slow"))
        d = self.take_one(backend, clock)

        def finish() -> None:
            time.sleep(0.1)
            backend.ack(d.id, d.token, b"1", clock.now())

        helper = threading.Thread(target=finish)
        started = time.monotonic()
        helper.start()
        try:
            found = backend.wait(["slow"], 20, clock.now)
        finally:
            helper.join(30)
        assert found["slow"].state == SUCCESS
        assert time.monotonic() - started < 5.0

    def test_wait_for_work_is_woken_by_an_enqueue(self, backend: Backend,
                                                  clock: FakeClock) -> None:
        """An idle worker blocked in `wait_for_work` wakes when a task arrives, not when its
        (long) timeout ends."""

        def produce() -> None:
            time.sleep(0.1)
            self.put(backend, clock, msg("new"))

        helper = threading.Thread(target=produce)
        started = time.monotonic()
        helper.start()
        try:
            backend.wait_for_work(["q"], 20)
        finally:
            helper.join(30)
        assert time.monotonic() - started < 5.0
        assert self.ids(self.take(backend, clock)) == ["new"]

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
