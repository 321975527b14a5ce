"""The read-only listing primitives the dashboard's tasks view uses: `list_messages`,
`list_results` and `task_record` (kinds, orders, paging, what is hidden)."""

from __future__ import annotations

import pytest

from ...backends.base import (
    FAILURE,
    READY,
    REVOKED,
    RUNNING,
    SCHEDULED_KIND,
    SUCCESS,
    Backend,
)
from ...clock import FakeClock
from .base import LEASE, ConformanceBase, msg


class ListingConformance(ConformanceBase):
    def listed(self, backend: Backend, clock: FakeClock, kind: str, queue: str | None = None,
               limit: int = 100, offset: int = 0) -> list[str]:
        return [m.id for m in backend.list_messages(kind, queue, clock.now(), limit, offset)]

    def test_list_messages_by_kind_queue_and_order(self, backend: Backend,
                                                   clock: FakeClock) -> None:
        t0 = clock.now()
        self.put(backend, clock, msg("a"), msg("b", priority=5), msg("c", "r"), msg("d"),
                 msg("s1", ready_at=t0 + 100), msg("s2", "r", ready_at=t0 + 50))
        assert self.listed(backend, clock, READY) == ["b", "a", "c", "d"]  # claim order
        assert self.listed(backend, clock, READY, "q") == ["b", "a", "d"]
        assert self.listed(backend, clock, READY, "q", limit=2, offset=1) == ["a", "d"]
        assert self.listed(backend, clock, READY, "q", limit=5, offset=3) == []
        assert self.listed(backend, clock, READY, "nowhere") == []
        assert self.listed(backend, clock, SCHEDULED_KIND) == ["s2", "s1"]  # by ready_at
        assert self.listed(backend, clock, SCHEDULED_KIND, "q") == ["s1"]
        assert self.listed(backend, clock, RUNNING) == []
        a = backend.list_messages(READY, "q", t0, 1, 1)[0]
        assert (a.id, a.queue, a.body, a.priority, a.ready_at, a.delivery_count) == (
            "a", "q", b"a", 0, 0.0, 0)
        assert a.enqueued_at in (None, t0)
        assert (a.lease_until, a.worker) == (None, None)

        held = self.take_one(backend, clock)
        assert held.id == "b"
        assert self.listed(backend, clock, READY) == ["a", "c", "d"]
        [b] = backend.list_messages(RUNNING, None, clock.now())
        assert (b.id, b.delivery_count) == ("b", 1)
        assert b.lease_until == pytest.approx(t0 + LEASE)
        assert b.worker in ("w1", None)  # None where the backend keeps no lease holder
        assert self.listed(backend, clock, RUNNING, "r") == []

        clock.advance(60)  # s2 is due, b's lease ran out: both are ready again, in claim order
        assert self.listed(backend, clock, READY) == ["b", "a", "c", "d", "s2"]
        assert self.listed(backend, clock, RUNNING) == []
        assert self.listed(backend, clock, SCHEDULED_KIND) == ["s1"]
        assert backend.list_messages(READY, None, clock.now())[0].lease_until is None

    def test_list_messages_running_by_lease_end_and_not_dead(self, backend: Backend,
                                                             clock: FakeClock) -> None:
        self.put(backend, clock, msg("x"), msg("y"), msg("z"))
        x = self.take_one(backend, clock, lease=100)
        y = self.take_one(backend, clock, lease=10)
        z = self.take_one(backend, clock, lease=50)
        assert self.listed(backend, clock, RUNNING) == ["y", "z", "x"]
        backend.bury("z", z.token, "boom", clock.now())
        backend.ack("y", y.token, None, clock.now())
        assert self.listed(backend, clock, RUNNING) == ["x"]
        assert x.id == "x"
        for kind in (READY, SCHEDULED_KIND):
            assert self.listed(backend, clock, kind) == []
        with pytest.raises(ValueError, match="ready"):
            backend.list_messages("dead", None, clock.now())

    def test_list_results_by_state_newest_first(self, backend: Backend,
                                                clock: FakeClock) -> None:
        t0 = clock.now()
        self.put(backend, clock, msg("ok"), msg("bad"), msg("dead"), msg("gone"), msg("rv"),
                 msg("ok2"))
        held = {d.id: d for d in self.take(backend, clock)}
        clock.advance(1)
        now = clock.now()
        backend.ack("ok", held["ok"].token, b"1", now, result_ttl=100)
        backend.ack("ok2", held["ok2"].token, b"2", now, result_ttl=100)
        backend.ack("bad", held["bad"].token, b"err", now, state=FAILURE, result_ttl=300)
        backend.bury("dead", held["dead"].token, "boom", now, data=b"tb", result_ttl=500)
        backend.ack("gone", held["gone"].token, None, now)
        backend.release("rv", held["rv"].token, now, now)
        assert backend.revoke(["rv"], now, False, b"revoked", 200) == [True]
        listed = backend.list_results(None, now)
        # latest expiry first, then id descending; the dead letter's FAILURE is not listed
        assert [r.id for r in listed] == ["bad", "rv", "ok2", "ok"]
        ok = listed[-1]
        assert (ok.state, ok.data) == (SUCCESS, b"1")
        assert ok.finished_at == pytest.approx(now)
        assert ok.expires_at == pytest.approx(now + 100)
        assert [r.id for r in backend.list_results(SUCCESS, now)] == ["ok2", "ok"]
        assert [r.id for r in backend.list_results(FAILURE, now)] == ["bad"]
        assert [(r.id, r.data) for r in backend.list_results(REVOKED, now)] == [
            ("rv", b"revoked")]
        assert [r.id for r in backend.list_results(None, now, 2, 1)] == ["rv", "ok2"]
        assert backend.list_results(None, now, 10, 4) == []
        with pytest.raises(ValueError, match="SUCCESS"):
            backend.list_results("PENDING", now)

        self.put(backend, clock, msg("ok2"))  # a new run hides the old result
        assert [r.id for r in backend.list_results(SUCCESS, now)] == ["ok"]
        assert [r.id for r in backend.list_results(None, t0 + 150)] == ["bad", "rv"]
        assert backend.list_results(None, t0 + 1000) == []

    def test_task_record(self, backend: Backend, clock: FakeClock) -> None:
        t0 = clock.now()
        assert backend.task_record("ghost", t0) is None
        self.put(backend, clock, msg("w", "q", b"body", priority=3, ready_at=t0 + 5),
                 msg("run"), msg("dead"), msg("done"))
        rec = backend.task_record("w", t0)
        assert rec is not None and rec.id == "w"
        assert rec.dead is None and rec.result is None and rec.message is not None
        m = rec.message
        assert (m.queue, m.body, m.priority, m.ready_at, m.delivery_count) == (
            "q", b"body", 3, t0 + 5, 0)
        assert m.enqueued_at in (None, t0)
        held = {d.id: d for d in self.take(backend, clock)}
        assert set(held) == {"run", "dead", "done"}
        run = backend.task_record("run", t0)
        assert run is not None and run.message is not None
        assert run.message.lease_until == pytest.approx(t0 + LEASE)
        assert run.message.worker in ("w1", None)
        assert run.message.delivery_count == 1
        clock.advance(2)
        now = clock.now()
        backend.bury("dead", held["dead"].token, "no luck", now, data=b"tb")
        backend.ack("done", held["done"].token, b"42", now, result_ttl=60)
        dead = backend.task_record("dead", now)
        assert dead is not None and dead.dead is not None and dead.result is not None
        assert (dead.dead.reason, dead.dead.queue, dead.dead.delivery_count) == (
            "no luck", "q", 1)
        assert dead.dead.died_at == pytest.approx(now)
        assert (dead.result.state, dead.result.data) == (FAILURE, b"tb")
        assert dead.message is not None and dead.message.lease_until is None
        done = backend.task_record("done", now)
        assert done is not None and done.message is None and done.dead is None
        assert done.result is not None
        assert (done.result.state, done.result.data) == (SUCCESS, b"42")
        assert done.result.finished_at == pytest.approx(now)
        assert done.result.expires_at == pytest.approx(now + 60)
        assert backend.task_record("done", now + 61) is None  # its result expired
        self.put(backend, clock, msg("done"))  # a new run: the old result is not its own
        again = backend.task_record("done", now)
        assert again is not None and again.result is None and again.message is not None
