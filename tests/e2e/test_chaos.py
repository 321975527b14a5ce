"""Short runs of the chaos scenarios (conveyor.testing.chaos) on every backend; `make chaos`
runs them at full size. Each prints its figures (pytest -s shows them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.testing.chaos import kill_storm, soak, sqlite_hammer
from conveyor.worker.consumer import MAX_BATCH
from servers import ON_EVERY_SERVER_BACKEND

# One xdist worker runs these, one after another (`make test` uses --dist loadgroup): each
# loads the machine, and three at once would starve the timing of every other test.
pytestmark = pytest.mark.xdist_group("chaos")


def url_for(backend_url: str | None, tmp_path: Path) -> str:
    return backend_url or f"sqlite:///{tmp_path / 'q.db'}"


@ON_EVERY_SERVER_BACKEND
@pytest.mark.timeout(240)
def test_kill_storm(backend_url: str | None, tmp_path: Path) -> None:
    report = kill_storm(url_for(backend_url, tmp_path), tmp_path, tasks=3000,
                        task_seconds=0.004, every=(0.3, 1.0), timeout=180)
    print("\n".join(report.lines()))
    assert len(report.kills) >= 2, report.lines()
    assert report.missing == 0 and report.not_succeeded == 0, report.lines()
    # An extra run only ever repeats a run of a killed process, and a process can lose at
    # most what it held: one claimed batch.
    assert report.unexplained == 0, report.lines()
    assert max(report.extra_by_killed.values(), default=0) <= MAX_BATCH, report.extra_by_killed


@ON_EVERY_SERVER_BACKEND
@pytest.mark.timeout(240)
def test_soak_memory_stays_flat_and_each_task_runs_once(backend_url: str | None,
                                                         tmp_path: Path) -> None:
    report = soak(url_for(backend_url, tmp_path), tmp_path, tasks=60_000, timeout=200)
    print("\n".join(report.lines()))
    assert report.exactly_once, report.lines()
    # Looser than the full soak's 10%: a short run has fewer samples after warm-up.
    assert report.growth < 0.20, report.lines()
    assert report.queued_growth < 0.20, report.lines()


@pytest.mark.timeout(240)
def test_sixteen_producers_four_workers_one_sqlite_file(tmp_path: Path) -> None:
    # Small: 16 producers saturate the disk, and the rest of the suite runs meanwhile. The WAL
    # bound under sustained load is tests/unit/test_sqlite_checkpoint.py's, and `make chaos`
    # measures it with 80,000 tasks.
    report = sqlite_hammer(tmp_path, producers=16, per_producer=200, timeout=200)
    print("\n".join(report.lines()))
    assert report.locked_errors == 0, report.lines()
    assert report.exactly_once, report.lines()
    assert report.worker_exit == 0
    assert report.wal_end < 16 * 1024 * 1024, report.lines()  # cut back once the load stops
