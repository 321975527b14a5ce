"""Workers SIGKILLed at random moments while draining: every task still completes, the extra
runs stay within what the killed workers held, and the SQLite file is never corrupted."""

from __future__ import annotations

import random
import sqlite3
import time
from collections import Counter
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Project  # the `project` fixture of tests/e2e/conftest.py

pytestmark = [pytest.mark.timeout(120), pytest.mark.xdist_group("chaos")]  # see test_chaos.py

TASKS = 2000
KILLS = 5


def test_random_sigkills_lose_nothing_and_corrupt_nothing(project: Project) -> None:
    tasks = project.write_tasks('''
@app.task(bind=True)
def mark(ctx, n):
    record("mark", n)
    time.sleep(0.003)  # long enough that every kill lands mid-drain
    return n
''', lease=1)
    group = tasks.mark.map([(n,) for n in range(TASKS)])
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    for _ in range(KILLS):
        w = project.worker("-c", "2")
        w.wait_for_log(r"succeeded in")  # it is draining: now kill it at a random moment
        time.sleep(rng.uniform(0.0, 0.3))
        w.kill_group()
        w.wait(10)
    last = project.worker("-c", "2")
    assert group.get(timeout=60) == list(range(TASKS)), f"seed {seed}"
    runs = Counter(int(line[2]) for line in project.ledger() if line[1] == "mark")
    assert set(runs) == set(range(TASKS)), f"seed {seed}"
    extra = sum(runs.values()) - TASKS
    # Each kill can repeat at most what the killed worker held: per child, one claimed batch
    # (at most 16) whose outcomes were not yet sent.
    assert extra <= KILLS * 2 * 16, f"seed {seed}: {extra} extra runs"
    print(f"seed {seed}: {TASKS} tasks, {KILLS} SIGKILLs, {extra} extra runs")
    assert last.stop() == 0
    with sqlite3.connect(project.db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        left = conn.execute("SELECT count(*) FROM conveyor_messages").fetchone()[0]
    assert left == 0
