"""The tour, as a user runs it: `examples/demo.py` starts a worker on a fresh SQLite file, runs
every step script, stops the worker with SIGTERM, and must show each step's result and exit 0.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo.py"


def test_demo_runs_every_tour_step_and_exits_zero() -> None:
    env = {k: v for k, v in os.environ.items() if k != "CONVEYOR_URL"}
    done = subprocess.run([sys.executable, str(DEMO)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    out = done.stdout
    report = f"exit {done.returncode}\n--- stdout ---\n{out}\n--- stderr ---\n{done.stderr}"
    assert done.returncode == 0, report

    # 1. delay / get
    assert "result.get(timeout=10) -> 5" in out, report
    # 2. a failure re-raised here, with the worker's traceback naming the task's own line
    assert "raised TaskFailed: ZeroDivisionError: division by zero" in out, report
    assert re.search(r'File ".*tasks\.py", line \d+, in divide', out), report
    assert "result.state -> FAILURE" in out, report
    # 3. ten one-second tasks on five processes: in parallel (serially they take 10 s)
    found = re.search(r"10 one-second tasks finished in ([\d.]+)s on (\d+) worker processes",
                      out)
    assert found, report
    assert float(found[1]) < 8.0, report
    assert int(found[2]) >= 2, report
    # 4. map keeps the order of enqueueing
    assert "-> [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]" in out, report
    assert "add.map([(1, 2), (3, 4)]).get() -> [3, 7]" in out, report
    # 5. retries
    assert "'fetched https://example.com on attempt 3'" in out, report
    # 6. the JSON rule
    assert "echo.delay((1, 2)).get() -> [1, 2]" in out, report
    assert "-> {'1': 'a'}" in out, report
    assert "raised SerializationError: tasks.echo: argument 'value'" in out, report
    # the worker stopped cleanly on SIGTERM
    assert re.search(r"worker exited with code 0\b", out), report
    assert "demo finished" in out, report
