"""`Conveyor.configure`: new settings on an app whose tasks were already declared (what the
Flask and Django integrations need), keeping tasks, periodic tasks, clock and middleware."""

from __future__ import annotations

from pathlib import Path

from conveyor import Conveyor, Middleware
from conveyor.clock import FakeClock


def test_configure_keeps_tasks_and_moves_to_the_new_backend(tmp_path: Path) -> None:
    clock = FakeClock()
    mw = Middleware()
    app = Conveyor("memory://", clock=clock, middleware=[mw])

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    @app.periodic(every=60)
    def tick() -> None:
        pass

    old = app.backend
    app.configure(f"sqlite:///{tmp_path / 'q.db'}", result_ttl=10)
    assert app.url.startswith("sqlite:///") and app.backend is not old
    assert app.result_ttl == 10
    assert app.clock is clock and app.middleware == (mw,)
    assert set(app.tasks) >= {add.name, tick.name}
    assert tick.name in app.periodic_tasks
    r = add.delay(2, 3)
    assert app.drain() == 1 and r.get(timeout=5) == 5
