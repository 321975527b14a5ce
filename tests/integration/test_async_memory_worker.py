"""The asyncio pool on memory://, in the producer's own process (memory lives in one process):
a real interpreter runs producers in a thread and the worker's event loop in the main thread,
and stops it with SIGTERM like a terminal would."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent('''
    import asyncio, os, signal, threading, time
    from conveyor import Conveyor, TaskFailed, chain
    from conveyor.worker.runner import run_worker

    app = Conveyor("memory://")

    @app.task
    async def add(a, b):
        await asyncio.sleep(0.01)
        return a + b

    @app.task(retries=1, retry_delay=0.01)
    async def fail():
        raise ValueError("boom")

    @app.task
    def plain(a):
        return a * 10

    @app.task(bind=True)
    async def slow(ctx):
        await asyncio.sleep(0.3)
        return ctx.attempt

    def produce():
        try:
            while signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                time.sleep(0.01)  # the worker has not installed its handler yet
            time.sleep(0.2)
            assert add.delay(2, 3).get(timeout=10) == 5
            assert add.map([(i, i) for i in range(50)]).get(timeout=10) == [2 * i for i in range(50)]
            assert chain(add.s(1, 2), plain.s(), add.s(5)).delay().get(timeout=10) == 35
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
    code = run_worker(app, concurrency=8, pool="async", log_level="INFO")
    print("WORKER EXIT", code, flush=True)
    producer.join(10)
''')


def test_async_pool_worker_on_memory(tmp_path: Path) -> None:
    script = tmp_path / "async_memory_worker.py"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "PRODUCER OK" in done.stdout, done.stderr
    assert "WORKER EXIT 0" in done.stdout, done.stderr
    assert "__main__.fail" in done.stderr and "dead letters" in done.stderr, done.stderr
    assert "SLOW 1" in done.stdout, (done.stdout, done.stderr)
