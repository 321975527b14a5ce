"""examples/limits_demo.py, the runnable companion of docs/limits.md, runs and says OK."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_limits_example_runs() -> None:
    env = {k: v for k, v in os.environ.items() if k != "CONVEYOR_URL"}
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "limits_demo.py")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.rstrip().endswith("OK"), (done.stdout,
                                                                          done.stderr)
    assert "partial export" in done.stdout
