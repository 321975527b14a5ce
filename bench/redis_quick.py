"""Quick figures for conveyor on Redis (the full harness is bench/servers.py).

    .venv/bin/python bench/redis_quick.py [--tasks 10000] [--roundtrips 300] [--url URL]

enqueue: N `noop.delay()` one after another; drain: those N with `conveyor worker -c 2`
started afterwards, until every result is stored (time includes the worker's start-up);
roundtrip: `noop.delay().get()` with that worker warm, p50/p90/p99. Uses its own key prefix
on the Redis at --url and deletes its keys afterwards.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--roundtrips", type=int, default=300)
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--concurrency", default="2")
    args = parser.parse_args()
    prefix = f"rq-{uuid.uuid4().hex[:8]}"
    url = f"{args.url}?prefix={prefix}"
    os.environ["CONVEYOR_URL"] = url
    sys.path.insert(0, str(BENCH_DIR))
    import benchapp

    app, noop = benchapp.app, benchapp.noop
    backend = app.backend
    proc = None
    try:
        ids = []
        t0 = time.perf_counter()
        for _ in range(args.tasks):
            ids.append(noop.delay().id)
        enq = time.perf_counter() - t0
        print(f"enqueue   {args.tasks / enq:9.0f} tasks/s  ({enq * 1e6 / args.tasks:.1f} us each)")

        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "conveyor", "worker", "benchapp:app", "-c",
                                 args.concurrency, "--log-level", "WARNING"], cwd=BENCH_DIR,
                                env={**os.environ, "CONVEYOR_URL": url},
                                start_new_session=True)
        first = None
        while True:
            left = sum(s.ready + s.running for s in backend.queue_stats(time.time()).values())
            now = time.perf_counter()
            if first is None and left < args.tasks:
                first = (now, args.tasks - left)
            if left == 0:
                break
            time.sleep(0.005)
        drain = time.perf_counter() - t0
        stored = backend.get_results(ids, time.time())
        ok = sum(1 for r in stored.values() if r.state == "SUCCESS")
        steady = ""
        if first is not None and now > first[0]:
            steady = f", steady {(args.tasks - first[1]) / (now - first[0]):.0f}/s"
        print(f"drain     {args.tasks / drain:9.0f} tasks/s  ({ok} results stored{steady})")

        for _ in range(30):
            noop.delay().get(timeout=10)
        times = []
        for _ in range(args.roundtrips):
            t0 = time.perf_counter()
            noop.delay().get(timeout=10)
            times.append((time.perf_counter() - t0) * 1000)
        cuts = statistics.quantiles(times, n=100, method="inclusive")
        print(f"roundtrip p50 {statistics.median(times):.3f} ms  p90 {cuts[89]:.3f} ms  "
              f"p99 {cuts[98]:.3f} ms")
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        conn = backend._wire  # type: ignore[attr-defined]
        keys = conn.command("KEYS", f"{prefix}:*")
        for i in range(0, len(keys), 500):
            conn.command("DEL", *keys[i:i + 500])
        app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
