"""Reading counters: `read_counters`, which the dashboard uses to show what workers counted."""

from __future__ import annotations

from ...backends.base import Backend
from ...clock import FakeClock
from .base import ConformanceBase


class CountersConformance(ConformanceBase):
    def test_read_counters_returns_live_ones(self, backend: Backend, clock: FakeClock) -> None:
        t0 = clock.now()
        backend.incr("a", 3, 10, t0)
        backend.incr("b", -2, 100, t0)
        backend.incr("with:colons and spaces/é", 7, 100, t0)
        assert backend.read_counters([], t0) == {}
        assert backend.read_counters(["a", "b", "missing", "with:colons and spaces/é"], t0) == {
            "a": 3, "b": -2, "with:colons and spaces/é": 7}
        assert backend.read_counters(["a", "a"], t0 + 9.5) == {"a": 3}  # duplicates are fine
        assert backend.read_counters(["a", "b"], t0 + 10) == {"b": -2}  # `a` ran out

    def test_read_counters_creates_nothing(self, backend: Backend, clock: FakeClock) -> None:
        t0 = clock.now()
        assert backend.read_counters(["x"], t0) == {}
        # Had the read created `x` with some expiry, this would not start a window of 10 s.
        assert backend.incr("x", 1, 10, t0 + 1) == 1
        assert backend.read_counters(["x"], t0 + 10.5) == {"x": 1}
        assert backend.read_counters(["x"], t0 + 11) == {}

    def test_read_counters_many_keys(self, backend: Backend, clock: FakeClock) -> None:
        now = clock.now()
        keys = [f"k{i}" for i in range(1200)]
        for i in range(0, 1200, 7):
            backend.incr(keys[i], i, 100, now)
        expected = {keys[i]: i for i in range(7, 1200, 7)}  # k0 is at 0: it may be left out
        got = backend.read_counters(keys, now)
        assert {k: v for k, v in got.items() if v} == expected

    def test_incr_many_adds_like_incr(self, backend: Backend, clock: FakeClock) -> None:
        t0 = clock.now()
        backend.incr("m:a", 5, 10, t0)
        backend.incr_many([], t0)
        backend.incr_many([("m:a", 2, 10), ("m:b", 3, 100), ("m:a", 1, 10),
                           ("m:é space", -4, 100)], t0 + 1)
        assert backend.read_counters(["m:a", "m:b", "m:é space"], t0 + 1) == {
            "m:a": 8, "m:b": 3, "m:é space": -4}
        # A window that ran out starts again at the increment, as with incr.
        backend.incr_many([("m:a", 4, 10), ("m:b", 1, 100)], t0 + 10)
        assert backend.read_counters(["m:a", "m:b"], t0 + 10) == {"m:a": 4, "m:b": 4}
        assert backend.incr("m:a", 1, 10, t0 + 11) == 5

    def test_incr_many_many_keys(self, backend: Backend, clock: FakeClock) -> None:
        now = clock.now()
        items = [(f"many:{i}", i + 1, 100.0) for i in range(700)]
        backend.incr_many(items, now)
        backend.incr_many(items, now)
        got = backend.read_counters([k for k, _, _ in items], now)
        assert got == {k: 2 * by for k, by, _ in items}
