"""The whole tour, start to finish: start a worker on a fresh SQLite file, run each step script
as a user would, then stop the worker with SIGTERM. `make demo` runs this.

Exit code 0 when every step and the worker's shutdown went well.
"""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent
CONCURRENCY = 5
STEP_TIMEOUT = 60.0
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


def say(text: str) -> None:
    print(text, flush=True)


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`conveyor worker tasks -c 5`, run from examples/ so the tasks are named `tasks.*`."""
    cmd = [sys.executable, "-m", "conveyor", "worker", "tasks", "-c", str(CONCURRENCY)]
    say(f"$ cd examples && conveyor worker tasks -c {CONCURRENCY}   (log: {log.name})")
    with log.open("wb") as out:
        return subprocess.Popen(cmd, cwd=EXAMPLES, env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def wait_until_up(worker: subprocess.Popen[bytes]) -> bool:
    """True once the worker has registered itself in the backend."""
    from tasks import app  # imported late: CONVEYOR_URL must be set first

    from conveyor.inspect import Inspector

    inspector = Inspector(app)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            return False
        if inspector.workers():
            return True
        time.sleep(0.05)
    return False


def run_steps(env: dict[str, str]) -> bool:
    ok = True
    for script in sorted(EXAMPLES.glob("[0-9][0-9]_*.py")):
        say(f"\n== {script.name}: {summary(script)}")
        try:
            done = subprocess.run([sys.executable, str(script)], env=env, timeout=STEP_TIMEOUT)
        except subprocess.TimeoutExpired:
            say(f"!! {script.name} did not finish within {STEP_TIMEOUT:.0f}s")
            ok = False
            continue
        if done.returncode != 0:
            say(f"!! {script.name} exited with code {done.returncode}")
            ok = False
    return ok


def summary(script: Path) -> str:
    """The first line of a step script's docstring, without its "Step N: " prefix."""
    doc = ast.get_docstring(ast.parse(script.read_text())) or ""
    return doc.strip().split("\n")[0].split(": ", 1)[-1]


def stop_worker(worker: subprocess.Popen[bytes]) -> int | None:
    """SIGTERM: the worker finishes what it runs and exits 0. None if it would not stop."""
    if worker.poll() is not None:
        return worker.returncode
    worker.send_signal(signal.SIGTERM)
    try:
        return worker.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
        return None


def show_log(log: Path, lines: int = 40) -> None:
    text = log.read_text(errors="replace").splitlines()
    say(f"\n-- last {min(lines, len(text))} lines of the worker log --")
    for line in text[-lines:]:
        say(line)


def main() -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="conveyor-demo-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'demo.db'}"
        os.environ["CONVEYOR_URL"] = url
        env = dict(os.environ)
        say(f"backend: {url}")
        log = Path(tmp) / "worker.log"
        worker = start_worker(env, log)
        try:
            if not wait_until_up(worker):
                say("!! the worker did not start")
                show_log(log)
                return 1
            ok = run_steps(env)
        finally:
            code = stop_worker(worker)
        say(f"\n$ kill -TERM {worker.pid}   -> worker exited with code {code}")
        if code != 0:
            ok = False
        if not ok:
            show_log(log)
    say(f"\n{'demo finished' if ok else 'demo FAILED'} in {time.monotonic() - started:.1f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
