"""A quick check of conveyor on PostgreSQL: enqueue rate, drain rate, round-trip latency.

    .venv/bin/python bench/postgres_quick.py [--tasks 5000] [--roundtrips 300] [-c 2]
        [--url postgresql://postgres@127.0.0.1:5432/test]

In a schema of its own (dropped afterwards), the same steps as bench/cases.py:
  enqueue    N `noop.delay()` calls from this process, one after another, timed;
  drain      start `conveyor worker benchapp:app -c C` (process pool), time until all N
             results are stored (and the rate from the first stored result to the last);
  roundtrip  with that worker warm, `noop.delay().get()` one at a time: p50/p90/p99.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
POLL = 0.005


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default=os.environ.get("CONVEYOR_TEST_POSTGRES_URL",
                                                    "postgresql://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--tasks", type=int, default=5000)
    ap.add_argument("--roundtrips", type=int, default=300)
    ap.add_argument("-c", "--concurrency", type=int, default=2)
    ap.add_argument("--pool", default="process")
    ap.add_argument("--keep", action="store_true", help="do not drop the schema")
    args = ap.parse_args()

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    url = f"{args.url}{'&' if '?' in args.url else '?'}schema={schema}"
    os.environ["CONVEYOR_URL"] = url
    sys.path.insert(0, str(BENCH_DIR))
    from benchapp import app, noop  # noqa: PLC0415 - needs CONVEYOR_URL first

    out: dict[str, object] = {"url": url, "tasks": args.tasks}
    admin = psycopg.connect(args.url, autocommit=True)
    worker = None
    try:
        app.backend.queue_stats(time.time())  # connect and create the schema, untimed
        t0 = time.perf_counter()
        for _ in range(args.tasks):
            noop.delay()
        enq = time.perf_counter() - t0
        out["enqueue_per_s"] = round(args.tasks / enq)

        env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}:{BENCH_DIR}")
        log = open(BENCH_DIR / f"postgres_quick_{schema}.log", "wb")  # noqa: SIM115
        t0 = time.perf_counter()
        worker = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "worker", "benchapp:app", "-c",
             str(args.concurrency), "--pool", args.pool, "--log-level", "WARNING"],
            cwd=BENCH_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
        count_sql = f'SELECT count(*) FROM "{schema}".conveyor_results'
        first = None
        while True:
            n = admin.execute(count_sql).fetchone()[0]  # type: ignore[index]
            now = time.perf_counter()
            if n and first is None:
                first = (now, n)
            if n >= args.tasks:
                break
            if now - t0 > 120:
                raise SystemExit(f"drain stalled at {n}/{args.tasks}")
            time.sleep(POLL)
        total = now - t0
        out["drain_per_s"] = round(args.tasks / total)
        if first is not None and now > first[0]:
            out["drain_steady_per_s"] = round((args.tasks - first[1]) / (now - first[0]))

        for _ in range(30):  # warm up
            noop.delay().get(timeout=10)
        times = []
        for _ in range(args.roundtrips):
            t = time.perf_counter()
            noop.delay().get(timeout=10)
            times.append(time.perf_counter() - t)
        times.sort()
        out["roundtrip_ms"] = {
            "p50": round(statistics.median(times) * 1000, 2),
            "p90": round(times[int(len(times) * 0.9)] * 1000, 2),
            "p99": round(times[int(len(times) * 0.99)] * 1000, 2),
        }
    finally:
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        app.close()
        if not args.keep:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            log_path = BENCH_DIR / f"postgres_quick_{schema}.log"
            if log_path.exists() and worker is not None and worker.returncode == 0:
                log_path.unlink()
        admin.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
