"""Transactional enqueue is a PostgreSQL feature; elsewhere it fails loudly, never silently
enqueueing outside the caller's transaction. (The PostgreSQL behaviour itself is tested in
tests/integration/test_transactional_enqueue.py against a real server.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor import ConfigError, Conveyor


def make(url: str) -> tuple[Conveyor, object]:
    app = Conveyor(url)

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    return app, add


@pytest.mark.parametrize("scheme", ["memory", "sqlite"])
def test_connection_is_refused_where_it_cannot_be_honoured(scheme: str, tmp_path: Path) -> None:
    url = "memory://" if scheme == "memory" else f"sqlite:///{tmp_path / 'q.db'}"
    app, add = make(url)
    with pytest.raises(ConfigError, match="postgresql://"):
        add.apply_async((1, 2), connection=object())  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="postgresql://"), app.transaction(object()):
        add.delay(1, 2)  # type: ignore[attr-defined]
    assert app.drain() == 0, "nothing may have been enqueued outside the transaction"


def test_transaction_needs_a_connection() -> None:
    app, _ = make("memory://")
    with pytest.raises(ConfigError, match="connection"), app.transaction(None):
        pass


def test_the_transaction_block_ends_with_the_with(tmp_path: Path) -> None:
    app, add = make("memory://")
    with pytest.raises(ConfigError), app.transaction(object()):
        add.delay(1, 2)  # type: ignore[attr-defined]
    r = add.delay(1, 2)  # type: ignore[attr-defined]
    assert app.drain() == 1 and r.get(timeout=1) == 3
