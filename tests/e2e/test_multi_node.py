"""Workers on "several machines": worker processes with different node names on one backend.
Each task runs exactly once, the work spreads over the nodes, and `conveyor status` lists
every node's worker."""

from __future__ import annotations

import collections
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from servers import ON_EVERY_SERVER_BACKEND

if TYPE_CHECKING:
    from conftest import Project

pytestmark = [ON_EVERY_SERVER_BACKEND, pytest.mark.timeout(120)]

TASKS = '''
@app.task
def job(n):
    record("job", n, os.environ["NODE_TAG"])
    time.sleep(0.002)
    return n
'''
NODES = ("node-a", "node-b", "node-c")
JOBS = 600


def test_workers_on_three_nodes_run_each_task_once(project: Project) -> None:
    tasks = project.write_tasks(TASKS, lease=30)
    workers = [project.worker("-c", "2", "--node", node, env={"NODE_TAG": node})
               for node in NODES]

    group = tasks.job.map([(n,) for n in range(JOBS)])
    assert group.get(timeout=90) == list(range(JOBS))

    runs = [fields for fields in project.ledger() if fields[1] == "job"]
    per_job = collections.Counter(int(fields[2]) for fields in runs)
    assert sorted(per_job) == list(range(JOBS))
    assert set(per_job.values()) == {1}, [n for n, c in per_job.items() if c > 1]
    per_node = collections.Counter(fields[3] for fields in runs)
    print("runs per node:", dict(per_node))
    assert set(per_node) == set(NODES), per_node  # all three took a share of the work

    status = subprocess.run([sys.executable, "-m", "conveyor", "status", "tasks"],
                            cwd=project.root, capture_output=True, text=True, timeout=60,
                            env={**project.env, "PYTHONPATH": str(project.root)})
    assert status.returncode == 0, status.stderr
    for node in NODES:
        assert node in status.stdout, status.stdout
    for w in workers:
        assert w.stop() == 0
