"""Measure one queue (conveyor or huey) on a fresh SQLite file and print the figures as JSON.

    python bench/cases.py conveyor|huey|huey-normal --dir DIR [--tasks 10000] [--roundtrips 300]

In one pass over one database file:
  enqueue    N `delay()` calls from this process, one after another, timed;
  drain      those N tasks are then queued: start the worker (two process-pool children),
             time until all N results are stored; also the rate from the first result seen to
             the last, which leaves out the worker's start-up;
  roundtrip  with that worker still running and warm, `delay().get()` one at a time.
The result count is polled every POLL seconds through a separate read-only connection.
`--only enqueue` stops after the first step (what bench/profile_enqueue.py profiles);
`--only drain` after the second; `--profile-child OUT --py-spy PATH` records one worker child
with py-spy during the drain (what bench/profile_drain.py does).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from systems import BENCH_DIR, SYSTEMS, System, make_system

POLL = 0.005
DRAIN_LIMIT = 120.0  # give up on a drain after this many seconds
WARMUP_ROUNDTRIPS = 30


def measure_enqueue(system: System, n: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    for _ in range(n):
        system.enqueue()
    elapsed = time.perf_counter() - t0
    return {"tasks": n, "seconds": elapsed, "per_s": n / elapsed}


class Counter:
    """Counts stored results without taking a write lock (WAL readers never block writers)."""

    def __init__(self, system: System) -> None:
        self.sql = system.count_sql
        self.conn = sqlite3.connect(f"file:{system.db_path}?mode=ro", uri=True,
                                    isolation_level=None)

    def __call__(self) -> int:
        try:
            return int(self.conn.execute(self.sql).fetchone()[0])
        except sqlite3.OperationalError:  # e.g. the results table is not there yet
            return 0


def start_worker(system: System, log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen(system.worker_command(), cwd=BENCH_DIR, env=system.worker_env(),
                                stdout=log, stderr=subprocess.STDOUT)


def stop_worker(system: System, proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(system.stop_signal)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def child_pids(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return sorted(int(p) for p in text.split())


class ChildProfiler:
    """py-spy on one worker child (the newest of the first two: a pool child for conveyor, a
    worker for Huey, whose first child is its scheduler), wall time (--idle) with C frames."""

    def __init__(self, py_spy: Path, out: Path, rate: int) -> None:
        self.py_spy, self.out, self.rate = py_spy, out, rate
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid = 0

    def attach(self, parent: int) -> None:
        deadline = time.monotonic() + 10
        while len(kids := child_pids(parent)) < 2:
            if time.monotonic() > deadline:
                raise SystemExit(f"worker {parent} started no children in 10s")
            time.sleep(0.001)
        self.pid = kids[1]
        self.proc = subprocess.Popen([str(self.py_spy), "record", "--pid", str(self.pid),
                                      "--rate", str(self.rate), "--idle", "--native",
                                      "--format", "raw", "--output", str(self.out)])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
            self.proc.wait(timeout=30)


def measure_drain(system: System, n: int, log_path: Path, profiler: ChildProfiler | None = None,
                  ) -> tuple[dict[str, Any], subprocess.Popen[bytes]]:
    """Start the worker on N queued tasks; return the figures and the (still running) worker."""
    count = Counter(system)
    already = count()
    t0 = time.perf_counter()
    proc = start_worker(system, log_path)
    if profiler is not None:
        profiler.attach(proc.pid)
    first_t = first_n = None
    done = already
    while True:
        done = count() - already
        now = time.perf_counter()
        if done and first_t is None:
            first_t, first_n = now, done
        if done >= n or now - t0 > DRAIN_LIMIT or proc.poll() is not None:
            break
        time.sleep(POLL)
    elapsed = now - t0
    if profiler is not None:
        profiler.stop()
    out: dict[str, Any] = {"tasks": n, "completed": done, "seconds": elapsed,
                           "per_s": done / elapsed}
    if first_t is not None and first_n is not None and now > first_t:
        out["startup_s"] = first_t - t0
        out["steady_per_s"] = (done - first_n) / (now - first_t)
    if done < n:
        out["error"] = ("worker exited" if proc.poll() is not None
                        else f"not finished after {DRAIN_LIMIT:.0f}s")
    return out, proc


def measure_roundtrip(system: System, n: int) -> dict[str, Any]:
    for _ in range(WARMUP_ROUNDTRIPS):
        system.roundtrip(10.0)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        system.roundtrip(10.0)
        times.append((time.perf_counter() - t0) * 1000)
    cuts = statistics.quantiles(times, n=100, method="inclusive")
    return {"calls": n, "p50_ms": statistics.median(times), "p90_ms": cuts[89],
            "p99_ms": cuts[98], "mean_ms": statistics.fmean(times), "max_ms": max(times)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("system", choices=SYSTEMS)
    parser.add_argument("--dir", type=Path, required=True, help="where the fresh db goes")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--roundtrips", type=int, default=300)
    parser.add_argument("--only", choices=["enqueue", "drain"], default=None)
    parser.add_argument("--profile-child", type=Path, default=None, metavar="OUT",
                        help="record one worker child with py-spy during the drain")
    parser.add_argument("--py-spy", type=Path, default=Path(sys.executable).with_name("py-spy"))
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    args = parser.parse_args(argv)
    db = args.dir.resolve() / f"{args.system}.db"
    if db.exists():
        raise SystemExit(f"{db} exists: the benchmark needs a fresh file")
    system = make_system(args.system, db)
    result: dict[str, Any] = {"system": system.name, "version": system.version,
                              "python": sys.version.split()[0],
                              "orjson": importlib.util.find_spec("orjson") is not None}
    result["enqueue"] = measure_enqueue(system, args.tasks)
    if args.only != "enqueue":
        log_path = args.dir / f"{args.system}-worker.log"
        profiler = (None if args.profile_child is None
                    else ChildProfiler(args.py_spy, args.profile_child, args.rate))
        result["drain"], proc = measure_drain(system, args.tasks, log_path, profiler)
        if profiler is not None:
            result["profiled_pid"] = profiler.pid
        try:
            if "error" not in result["drain"] and args.only != "drain":
                try:
                    result["roundtrip"] = measure_roundtrip(system, args.roundtrips)
                except Exception as exc:  # e.g. a result that never came: report, go on
                    result["roundtrip"] = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            result["worker_exit_code"] = stop_worker(system, proc)
        result["worker_log"] = str(log_path)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
