"""docs/workflows.md's example runs as the page says: a worker started with
`conveyor worker pipeline -c 4` in its directory, then `python run_pipeline.py` prints what
the page shows."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "workflows.md"

pytestmark = pytest.mark.timeout(120)


def block(name: str) -> str:
    """The fenced python block of the page that starts with `# <name>`."""
    for code in re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S):
        if code.startswith(f"# {name}\n"):
            return str(code)
    raise AssertionError(f"no `# {name}` block in {DOC}")


def test_the_pipeline_example_runs(tmp_path: Path) -> None:
    (tmp_path / "pipeline.py").write_text(block("pipeline.py"))
    (tmp_path / "run_pipeline.py").write_text(block("run_pipeline.py"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    with open(tmp_path / "worker.log", "wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "conveyor", "worker", "pipeline",
                                   "-c", "4"], cwd=tmp_path, env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        done = subprocess.run([sys.executable, "run_pipeline.py"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=90)
        report = (f"{done.stdout}\n{done.stderr}\n--- worker ---\n"
                  f"{(tmp_path / 'worker.log').read_text()}")
        assert done.returncode == 0, report
        assert "words per page: [2, 3, 4]" in done.stdout, report
        assert "words in all: 9" in done.stdout, report
        lines = (tmp_path / "stats.jsonl").read_text().splitlines()
        assert len(lines) == 6, lines  # three pipelines, then the same three in the chord
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
