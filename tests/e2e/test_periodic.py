"""Periodic tasks end to end: three worker processes (as three nodes) all run the scheduler on
one backend, and each tick of an every=1s task runs exactly once; then `conveyor periodic` and
`conveyor status` show its last and next run."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING

import pytest

from servers import ON_EVERY_SERVER_BACKEND

if TYPE_CHECKING:
    from conftest import Project

pytestmark = [ON_EVERY_SERVER_BACKEND, pytest.mark.timeout(60)]

TASKS = '''
from conveyor import TaskContext


@app.periodic(every=1, bind=True)
def beat(ctx: TaskContext):
    record("tick", ctx.id)


@app.periodic("0 3 * * *", tz="UTC")
def nightly():
    record("nightly")
'''
RUN_FOR = 10.0  # seconds of three schedulers racing for every tick


def tick_time(task_id: str) -> float:
    when = task_id.rpartition("@")[2]
    return datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()


def cli(project: Project, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "conveyor", *args, "tasks:app"],
                         cwd=project.root, env=project.env, capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_three_workers_run_each_tick_exactly_once(project: Project) -> None:
    project.write_tasks(TASKS, lease=10)
    workers = [project.worker("-c", "1", "--node", f"node-{n}", ready=False) for n in "abc"]
    for w in workers:
        w.wait_ready(timeout=20)
    for w in workers:
        assert "periodic (2):" in w.log()
    time.sleep(RUN_FOR)
    for w in workers:
        assert w.stop() == 0

    ticks = [fields[2] for fields in project.ledger() if fields[1] == "tick"]
    counts = Counter(ticks)
    assert [t for t, n in counts.items() if n > 1] == [], project.describe()
    times = sorted(tick_time(t) for t in counts)
    assert len(times) >= RUN_FOR - 3, project.describe()
    assert times == [times[0] + k for k in range(len(times))], project.describe()  # no gaps
    assert not [f for f in project.ledger() if f[1] == "nightly"]  # first deploy: no catch-up

    listing = cli(project, "periodic")
    beat_line = next(line for line in listing.splitlines() if line.startswith("tasks.beat "))
    assert "every 1s" in beat_line and "SUCCESS" in beat_line, listing
    nightly_line = next(line for line in listing.splitlines() if "tasks.nightly" in line)
    assert "0 3 * * * (UTC)" in nightly_line and " - " in nightly_line  # never ran yet
    assert "periodic tasks: 2" in cli(project, "status")


def test_a_worker_with_no_scheduler_enqueues_no_ticks(project: Project) -> None:
    project.write_tasks(TASKS, lease=10)
    worker = project.worker("-c", "1", "--no-scheduler")
    assert "periodic (2) (not scheduled here: --no-scheduler):" in worker.log()
    time.sleep(2.5)
    assert worker.stop() == 0
    assert project.ledger() == [], project.describe()
    assert "next run" not in worker.log()
