"""The claim loop of one slot, in process, on the memory backend."""

from __future__ import annotations

import threading
from typing import Any

from conveyor import SUCCESS, Conveyor
from conveyor.worker.consumer import Held, Slot


def test_an_internal_error_releases_the_batch_and_the_slot_goes_on() -> None:
    app = Conveyor("memory://")

    @app.task(name="t.add")
    def add(a: int, b: int) -> int:
        return a + b

    first, second = add.delay(1, 2), add.delay(3, 4)
    held = Held()
    slot = Slot(app, app.backend, None, "w", held, threading.Event(), max_tasks=2)
    real_prepare = slot.executor.prepare
    calls = {"n": 0}

    def flaky_prepare(d: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bug in conveyor")
        return real_prepare(d)

    slot.executor.prepare = flaky_prepare  # type: ignore[method-assign]
    assert slot.run() == 2
    assert (first.state, second.state) == (SUCCESS, SUCCESS)
    assert (first.get(), second.get()) == (3, 7)
    assert len(held) == 0, "nothing left for the heartbeat to extend"


def test_outcomes_ride_with_the_next_claim_and_are_flushed_on_exit() -> None:
    app = Conveyor("memory://")

    @app.task(name="t.one")
    def one() -> int:
        return 1

    results = one.map([()] * 5)
    slot = Slot(app, app.backend, None, "w", Held(), threading.Event(), max_tasks=5)
    assert slot.run() == 5
    assert slot.pending == []
    assert results.get(timeout=1) == [1] * 5
