"""8 producer processes x 4 worker processes on one SQLite file, through the public API and
the real CLI worker: nothing lost, nothing run twice, and no "database is locked" anywhere."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

PRODUCERS = 8
PER_PRODUCER = 500

TASKS = '''
import os
from conveyor import Conveyor

app = Conveyor({url!r})
LEDGER = {ledger!r}

@app.task(name="load.record")
def record(producer, n):
    fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{{producer}}:{{n}}\\n".encode())
    finally:
        os.close(fd)
    return n
'''

PRODUCER = '''
import sys
from loadtasks import record
producer, count = int(sys.argv[1]), int(sys.argv[2])
ids = [record.delay(producer, n).id for n in range(count)]
print("\\n".join(ids))
'''


def test_eight_producers_four_workers_one_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    ledger = tmp_path / "ledger.txt"
    (tmp_path / "loadtasks.py").write_text(TASKS.format(url=url, ledger=str(ledger)))
    (tmp_path / "produce.py").write_text(textwrap.dedent(PRODUCER))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "worker", "loadtasks", "-c", "4",
         "--log-level", "WARNING"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        producers = [subprocess.Popen([sys.executable, "produce.py", str(p), str(PER_PRODUCER)],
                                      cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
                     for p in range(PRODUCERS)]
        outputs = [p.communicate(timeout=120) for p in producers]
        for proc, (out, err) in zip(producers, outputs, strict=True):
            assert proc.returncode == 0, err
            assert "locked" not in err.lower()
            assert len(out.split()) == PER_PRODUCER
        expected = {f"{p}:{n}" for p in range(PRODUCERS) for n in range(PER_PRODUCER)}
        deadline = time.monotonic() + 120
        lines: list[str] = []
        while time.monotonic() < deadline:
            lines = ledger.read_text().split() if ledger.exists() else []
            if len(lines) >= len(expected):
                break
            time.sleep(0.1)
        assert sorted(lines) == sorted(expected), "every task ran exactly once"
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert "locked" not in err.lower(), err
    assert "Traceback" not in err, err
