"""Waiting for a result must not burn a core: `Result.get()` on SQLite polls with backoff."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from conveyor import Conveyor, TimeoutError


def test_get_waits_cheaply_on_sqlite(tmp_path: Path) -> None:
    app = Conveyor(f"sqlite:///{tmp_path}/cpu.db")
    try:
        never_run = app.task(name="cpu.never")(lambda: None)
        r = never_run.delay()  # no worker: it stays PENDING; also opens the database first
        cpu_start, wall_start = time.process_time(), time.monotonic()
        with pytest.raises(TimeoutError):
            r.get(timeout=1.0)
        cpu = time.process_time() - cpu_start
        wall = time.monotonic() - wall_start
    finally:
        app.close()
    share = 100.0 * cpu / wall
    print(f"\nResult.get(timeout=1.0) on SQLite: {cpu * 1000:.1f} ms CPU in {wall:.3f} s wall "
          f"= {share:.2f}% of one core")
    assert 0.95 <= wall < 3.0
    assert share < 5.0
