"""Measure one queue on Redis or PostgreSQL and print the figures as JSON (bench/servers.py runs
it once per system, in that system's interpreter).

    python bench/server_cases.py SYSTEM --dir DIR [--tasks 10000] [--roundtrips 300] [--batch 500]

In one pass, on storage made fresh for it (see bench/server_systems.py):
  enqueue    N single enqueue calls (`delay()` or the system's equivalent) from this process,
             one after another, timed from the first call to the last return;
  drain      those N tasks are then queued: start the worker (two processes running tasks),
             time until all N have finished with their results stored (for RQ and
             procrastinate: all N jobs finished); also the rate from the first finished task
             to the last, which leaves out the worker's start-up;
  roundtrip  with that worker still running and warm, enqueue-and-wait one at a time, 30
             warm-up calls then R timed ones; p50/p99;
  bulk       the worker stopped, N more tasks enqueued BATCH at a time through the system's
             bulk call (conveyor `task.map`), when it has one; timed like enqueue.
The finished count is polled every few ms (5 on Redis, 10 on PostgreSQL) from this process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from server_systems import BENCH_DIR, SYSTEMS, System, make_system

DRAIN_LIMIT = 240.0  # give up on a drain after this many seconds
WARMUP_ROUNDTRIPS = 30
STOP_WAIT = 20.0


def measure_enqueue(system: System, n: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    for _ in range(n):
        system.enqueue()
    elapsed = time.perf_counter() - t0
    return {"tasks": n, "seconds": elapsed, "per_s": n / elapsed}


def measure_bulk(system: System, n: int, batch: int) -> dict[str, Any]:
    sizes = [batch] * (n // batch) + ([n % batch] if n % batch else [])
    t0 = time.perf_counter()
    for size in sizes:
        system.bulk(size)
    elapsed = time.perf_counter() - t0
    return {"tasks": n, "batch": batch, "api": system.bulk_api, "seconds": elapsed,
            "per_s": n / elapsed}


def start_workers(system: System, log_path: Path) -> list[subprocess.Popen[bytes]]:
    """Each worker command in a session (process group) of its own, so that stopping it can
    also reach the children it forked, and nothing else."""
    procs = []
    with open(log_path, "ab") as log:
        for cmd in system.worker_commands():
            procs.append(subprocess.Popen(cmd, cwd=BENCH_DIR, env=system.worker_env(),
                                          stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True))
    return procs


def stop_workers(system: System, procs: list[subprocess.Popen[bytes]]) -> list[int | None]:
    """The graceful stop signal to each worker, up to STOP_WAIT seconds for it to exit, then
    SIGKILL to whatever is left in its process group."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(system.stop_signal)
    deadline = time.monotonic() + STOP_WAIT
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    codes = []
    for proc in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group is ours: start_new_session=True
        if proc.poll() is None:
            proc.wait()
            codes.append(None)  # did not stop gracefully
        else:
            codes.append(proc.returncode)
    return codes


def measure_drain(system: System, n: int, log_path: Path,
                  ) -> tuple[dict[str, Any], list[subprocess.Popen[bytes]]]:
    """Start the worker on N queued tasks; return the figures and the (running) workers."""
    already = system.done(n)
    if already:
        raise SystemExit(f"{system.name}: {already} tasks finished before the worker started")
    t0 = time.perf_counter()
    procs = start_workers(system, log_path)
    first_t = first_n = None
    done = 0
    while True:
        done = system.done(n)
        now = time.perf_counter()
        if done and first_t is None:
            first_t, first_n = now, done
        if (done >= n or now - t0 > DRAIN_LIMIT
                or any(p.poll() is not None for p in procs)):
            break
        time.sleep(system.poll)
    elapsed = now - t0
    out: dict[str, Any] = {"tasks": n, "completed": done, "seconds": elapsed,
                           "per_s": done / elapsed, "workers": len(procs)}
    if first_t is not None and first_n is not None and now > first_t:
        out["startup_s"] = first_t - t0
        out["steady_per_s"] = (done - first_n) / (now - first_t)
    if done < n:
        out["error"] = ("worker exited" if any(p.poll() is not None for p in procs)
                        else f"not finished after {DRAIN_LIMIT:.0f}s")
    elif done > n:
        out["error"] = f"{done} finished, more than the {n} queued"
    return out, procs


def measure_roundtrip(system: System, n: int) -> dict[str, Any]:
    for _ in range(WARMUP_ROUNDTRIPS):
        system.roundtrip(10.0)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        system.roundtrip(10.0)
        times.append((time.perf_counter() - t0) * 1000)
    cuts = statistics.quantiles(times, n=100, method="inclusive")
    return {"calls": n, "how": system.roundtrip_note, "p50_ms": statistics.median(times),
            "p90_ms": cuts[89], "p99_ms": cuts[98], "mean_ms": statistics.fmean(times),
            "max_ms": max(times)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("system", choices=list(SYSTEMS))
    parser.add_argument("--dir", type=Path, required=True, help="where the worker log goes")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--roundtrips", type=int, default=300)
    parser.add_argument("--batch", type=int, default=500, help="tasks per bulk enqueue call")
    parser.add_argument("--no-bulk", action="store_true")
    args = parser.parse_args(argv)
    system = make_system(args.system)
    system.setup()
    result: dict[str, Any] = {"system": system.name, "version": system.version,
                              "python": sys.version.split()[0],
                              "worker": [" ".join([Path(c[0]).name, *c[1:]])
                                         for c in system.worker_commands()]}
    log_path = args.dir / f"{args.system}-worker.log"
    result["worker_log"] = str(log_path)
    try:
        result["enqueue"] = measure_enqueue(system, args.tasks)
        result["drain"], procs = measure_drain(system, args.tasks, log_path)
        try:
            if "error" not in result["drain"]:
                try:
                    result["roundtrip"] = measure_roundtrip(system, args.roundtrips)
                except Exception as exc:  # e.g. a result that never came: report, go on
                    result["roundtrip"] = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            result["worker_exit_codes"] = stop_workers(system, procs)
        if system.bulk_api and not args.no_bulk:
            result["bulk"] = measure_bulk(system, args.tasks, args.batch)
    finally:
        system.teardown()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
