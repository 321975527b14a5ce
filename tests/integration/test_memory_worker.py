"""The worker on memory://: memory lives in one process, so its worker is the thread pool in
the producer's own process. A real interpreter runs a script that starts producers in a thread,
runs the worker in the main thread, and stops it with SIGTERM like a terminal would."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent('''
    import os, signal, threading, time
    from conveyor import Conveyor, TaskFailed
    from conveyor.worker.runner import run_worker

    app = Conveyor("memory://")

    @app.task
    def add(a, b):
        return a + b

    @app.task(retries=1, retry_delay=0.01)
    def fail():
        raise ValueError("boom")

    @app.task(bind=True)
    def slow(ctx):
        time.sleep(0.3)
        return ctx.attempt

    def produce():
        try:
            while signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                time.sleep(0.01)  # the worker has not installed its handler yet
            assert add.delay(2, 3).get(timeout=10) == 5
            assert add.map([(i, i) for i in range(50)]).get(timeout=10) == [2 * i for i in range(50)]
            try:
                fail.delay().get(timeout=10)
            except TaskFailed as exc:
                assert exc.exc_type == "ValueError", exc
            else:
                raise AssertionError("fail() succeeded")
            running = slow.delay()
            time.sleep(0.1)
            print("PRODUCER OK", flush=True)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # the worker finishes `slow` and exits
        print(f"SLOW {running.get(timeout=10)}", flush=True)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    code = run_worker(app, concurrency=2, pool="thread", log_level="INFO")
    print("WORKER EXIT", code, flush=True)
    producer.join(10)
''')


def test_thread_pool_worker_on_memory(tmp_path: Path) -> None:
    script = tmp_path / "memory_worker.py"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "PRODUCER OK" in done.stdout, done.stderr
    assert "WORKER EXIT 0" in done.stdout, done.stderr
    assert "__main__.fail" in done.stderr and "dead letters" in done.stderr, done.stderr
    assert "SLOW 1" in done.stdout, (done.stdout, done.stderr)
