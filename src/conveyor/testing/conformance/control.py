"""Progress reports and revocation: `set_progress`, `revoke`, `revoked` (docs/control.md)."""

from __future__ import annotations

import threading
import time

import pytest

from ...backends.base import (
    FAILURE,
    PENDING,
    PROGRESS,
    RETRY,
    REVOKED,
    STARTED,
    SUCCESS,
    Backend,
)
from ...clock import FakeClock
from .base import ConformanceBase, msg

GONE = b"revoked-payload"


class ControlConformance(ConformanceBase):
    # --- progress ---------------------------------------------------------------------------
    def test_progress_is_read_while_the_lease_is_held(self, backend: Backend,
                                                      clock: FakeClock) -> None:
        self.put(backend, clock, msg("m"), msg("other"))
        d = self.take_one(backend, clock)
        assert self.state(backend, clock, "m") == STARTED
        clock.advance(1)
        assert backend.set_progress("m", d.token, b"p1", clock.now()) is True
        found = backend.get_results(["m", "other"], clock.now())
        assert (found["m"].state, found["m"].data) == (PROGRESS, b"p1")
        assert found["m"].updated_at == pytest.approx(clock.now())
        assert found["other"].state == PENDING
        clock.advance(1)
        assert backend.set_progress("m", d.token, b"p2" * 5000, clock.now()) is True
        found = backend.get_results(["m"], clock.now())
        assert (found["m"].state, found["m"].data) == (PROGRESS, b"p2" * 5000)
        assert found["m"].updated_at == pytest.approx(clock.now())
        assert backend.ack("m", d.token, b"done", clock.now()) is True
        found = backend.get_results(["m"], clock.now())
        assert (found["m"].state, found["m"].data) == (SUCCESS, b"done")

    def test_progress_is_fenced_by_the_token(self, backend: Backend, clock: FakeClock) -> None:
        self.put(backend, clock, msg("m"), msg("dead"), msg("waiting"))
        d = self.take_one(backend, clock)
        assert backend.set_progress("m", "not-the-token", b"x", clock.now()) is False
        assert backend.set_progress("ghost", "t", b"x", clock.now()) is False
        assert backend.set_progress("waiting", "t", b"x", clock.now()) is False
        assert self.state(backend, clock, "m") == STARTED
        dead = self.take_one(backend, clock)
        assert dead.id == "dead"
        backend.bury("dead", dead.token, "boom", clock.now())
        assert backend.set_progress("dead", dead.token, b"x", clock.now()) is False
        assert self.state(backend, clock, "dead") == FAILURE
        # The lease runs out and another worker takes the message: the zombie cannot write,
        # and what it wrote before is not the new run's progress.
        assert backend.set_progress("m", d.token, b"old", clock.now()) is True
        clock.advance(self.lease + 1)
        again = self.take_one(backend, clock, ["q"])
        assert again.id == "m" and again.token != d.token
        assert self.state(backend, clock, "m") == STARTED
        assert backend.set_progress("m", d.token, b"zombie", clock.now()) is False
        assert backend.set_progress("m", again.token, b"new", clock.now()) is True
        assert backend.get_results(["m"], clock.now())["m"].data == b"new"

    def test_progress_is_hidden_by_a_release_and_a_lapsed_lease(self, backend: Backend,
                                                                clock: FakeClock) -> None:
        self.put(backend, clock, msg("m"))
        d = self.take_one(backend, clock)
        backend.set_progress("m", d.token, b"half", clock.now())
        clock.advance(self.lease + 1)  # the holder is gone: no longer running
        assert self.state(backend, clock, "m") == RETRY
        again = self.take_one(backend, clock)
        backend.set_progress("m", again.token, b"half again", clock.now())
        assert backend.release("m", again.token, clock.now() + 5, clock.now())
        assert self.state(backend, clock, "m") == RETRY

    # --- revoke -----------------------------------------------------------------------------
    def test_revoke_waiting_messages(self, backend: Backend, clock: FakeClock) -> None:
        t0 = clock.now()
        self.put(backend, clock, msg("ready"), msg("later", ready_at=t0 + 100), msg("kept"),
                 msg("retry"))
        d = self.take_one(backend, clock)
        assert d.id == "ready"
        backend.release("ready", d.token, t0 + 10, t0)  # waiting for its retry
        assert backend.revoke(["ready", "later", "ghost"], t0, False, GONE, 100) == [
            True, True, False]
        found = backend.get_results(["ready", "later", "kept"], t0)
        assert {i: (r.state, r.data) for i, r in found.items()} == {
            "ready": (REVOKED, GONE), "later": (REVOKED, GONE), "kept": (PENDING, None)}
        assert found["ready"].updated_at == pytest.approx(t0)
        assert backend.revoked(["ready", "later"]) == {}
        clock.advance(200)
        assert self.ids(self.take(backend, clock)) == ["kept", "retry"]
        # the result lives for its ttl
        assert self.state(backend, clock, "later") is None
        assert backend.revoke(["later"], clock.now(), True, GONE, 100) == [False]

    def test_revoke_frees_the_dedup_key(self, backend: Backend, clock: FakeClock) -> None:
        self.put(backend, clock, msg("a", key="k"), msg("b", key="kept", retention=50))
        assert backend.revoke(["a", "b"], clock.now(), False, GONE, 100) == [True, True]
        assert self.put(backend, clock, msg("a2", key="k"), msg("b2", key="kept")) == ["a2", "b"]

    def test_revoke_of_a_running_message_marks_it(self, backend: Backend,
                                                  clock: FakeClock) -> None:
        self.put(backend, clock, msg("soft"), msg("hard"), msg("free"))
        held = {d.id: d for d in self.take(backend, clock)}
        now = clock.now()
        assert backend.revoked(["soft", "hard", "free", "ghost"]) == {}
        assert backend.revoke(["soft"], now, False, GONE, 100) == [True]
        assert backend.revoke(["hard"], now, True, GONE, 100) == [True]
        assert backend.revoked(["soft", "hard", "free", "ghost"]) == {"soft": False,
                                                                      "hard": True}
        # Still running (and holding their leases) until the worker acts.
        found = backend.get_results(["soft", "hard"], now)
        assert {i: r.state for i, r in found.items()} == {"soft": STARTED, "hard": STARTED}
        assert backend.extend([(d.id, d.token) for d in held.values()], now, self.lease) == {
            d.token for d in held.values()}
        # A mark never weakens; terminate strengthens it.
        assert backend.revoke(["hard", "soft"], now, False, GONE, 100) == [True, True]
        assert backend.revoked(["soft", "hard"]) == {"soft": False, "hard": True}
        assert backend.revoke(["soft"], now, True, GONE, 100) == [True]
        assert backend.revoked(["soft"]) == {"soft": True}
        # The worker settles the stopped task itself (fenced as usual); the mark goes with it.
        assert backend.ack("hard", held["hard"].token, b"stopped", now, state=REVOKED)
        assert backend.ack("soft", held["soft"].token, b"ran", now)
        assert backend.revoked(["soft", "hard"]) == {}
        found = backend.get_results(["soft", "hard"], now)
        assert {i: (r.state, r.data) for i, r in found.items()} == {
            "soft": (SUCCESS, b"ran"), "hard": (REVOKED, b"stopped")}

    def test_a_revoke_mark_outlives_a_retry_and_a_redelivery(self, backend: Backend,
                                                             clock: FakeClock) -> None:
        self.put(backend, clock, msg("m"))
        d = self.take_one(backend, clock)
        backend.revoke(["m"], clock.now(), False, GONE, 100)
        assert backend.release("m", d.token, clock.now(), clock.now())
        assert backend.revoked(["m"]) == {"m": False}
        again = self.take_one(backend, clock)
        assert again.delivery_count == 2
        assert backend.revoked(["m"]) == {"m": False}
        clock.advance(self.lease + 1)  # lost again, then claimed again
        third = self.take_one(backend, clock)
        assert third.delivery_count == 3
        assert backend.revoked(["m"]) == {"m": False}
        assert backend.ack("m", third.token, GONE, clock.now(), state=REVOKED)
        # A new message with the same id starts without the mark.
        self.put(backend, clock, msg("m"))
        self.take_one(backend, clock)
        assert backend.revoked(["m"]) == {}

    def test_revoke_after_the_lease_ran_out_drops_the_message(self, backend: Backend,
                                                             clock: FakeClock) -> None:
        self.put(backend, clock, msg("m"))
        d = self.take_one(backend, clock)
        clock.advance(self.lease + 1)  # its worker is gone: nobody runs it now
        assert backend.revoke(["m"], clock.now(), False, GONE, 100) == [True]
        assert self.state(backend, clock, "m") == REVOKED
        assert backend.ack("m", d.token, b"late", clock.now()) is False  # the zombie
        assert self.take(backend, clock) == []
        assert backend.get_results(["m"], clock.now())["m"].data == GONE

    def test_revoke_leaves_finished_and_dead_tasks_alone(self, backend: Backend,
                                                         clock: FakeClock) -> None:
        self.put(backend, clock, msg("done"), msg("dead"), msg("quiet"))
        held = {d.id: d for d in self.take(backend, clock)}
        now = clock.now()
        backend.ack("done", held["done"].token, b"1", now)
        backend.bury("dead", held["dead"].token, "boom", now, data=b"err")
        backend.ack("quiet", held["quiet"].token, None, now)
        assert backend.revoke(["done", "dead", "quiet"], now, True, GONE, 100) == [
            False, False, False]
        found = backend.get_results(["done", "dead"], now)
        assert {i: (r.state, r.data) for i, r in found.items()} == {
            "done": (SUCCESS, b"1"), "dead": (FAILURE, b"err")}
        assert [x.id for x in backend.dead_letters()] == ["dead"]
        assert backend.revoked(["done", "dead"]) == {}
        assert backend.revoke([], now, False, GONE, 100) == []
        assert backend.revoked([]) == {}

    def test_retrying_a_dead_letter_clears_its_revoke_mark(self, backend: Backend,
                                                           clock: FakeClock) -> None:
        self.put(backend, clock, msg("m"))
        d = self.take_one(backend, clock)
        backend.revoke(["m"], clock.now(), False, GONE, 100)
        backend.bury("m", d.token, "failed", clock.now())
        assert backend.revoked(["m"]) == {}
        assert backend.retry_dead(["m"], clock.now()) == ["m"]
        self.take_one(backend, clock)
        assert backend.revoked(["m"]) == {}

    def test_revoke_wakes_a_waiting_caller(self, backend: Backend, clock: FakeClock) -> None:
        self.put(backend, clock, msg("m", ready_at=clock.now() + 1000))

        def revoke() -> None:
            time.sleep(0.1)
            backend.revoke(["m"], clock.now(), False, GONE, 100)

        helper = threading.Thread(target=revoke)
        started = time.monotonic()
        helper.start()
        try:
            found = backend.wait(["m"], 20, clock.now)
        finally:
            helper.join(30)
        assert (found["m"].state, found["m"].data) == (REVOKED, GONE)
        assert time.monotonic() - started < 5.0
