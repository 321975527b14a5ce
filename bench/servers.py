"""`make bench-servers`: conveyor on Redis and PostgreSQL against other task queues.

All on the same servers, in one run of about three minutes.

On Redis: conveyor, Celery, RQ (forking Worker and SimpleWorker), Dramatiq, Huey (polling and
notify_result). On PostgreSQL: conveyor and procrastinate. For each: the rate of single enqueue
calls, of bulk enqueue (where the system has one), the drain rate of N queued no-op tasks by a
worker running two processes (results stored; N = --tasks, --rq-tasks for the forking RQ,
--pg-tasks on PostgreSQL), and the enqueue-and-wait round trip p50/p99;
plus the bare client limits (one redis-py LPUSH per call, one psycopg INSERT per transaction).
Each system runs in its own interpreter: conveyor in this one, the peers in bench/.venv-peers
(made on first use). Prints a table, writes the raw numbers to bench/results/servers-latest.json.
See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import peersenv
from run import fmt, get, machine, ratio, run_json
from server_systems import SYSTEMS

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results"
CONVEYOR_BACKENDS = {"conveyor-redis": "conveyor.backends.redis.backend",
                     "conveyor-postgres": "conveyor.backends.postgres.backend"}
#: systems run with their own task count: the forking RQ drains ~100/s, and procrastinate's
#: drain slows as its backlog grows (conveyor on PostgreSQL gets the same count, like for like)
TASKS_OPTION = {"rq": "rq_tasks", "conveyor-postgres": "pg_tasks", "procrastinate": "pg_tasks"}
SERVERS = {"redis": "Redis", "postgres": "PostgreSQL"}


def backend_missing(module: str) -> str | None:
    """Why conveyor's backend `module` cannot be used yet (it is being written), or None."""
    out = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True,
                         text=True)
    if out.returncode == 0:
        return None
    lines = out.stderr.strip().splitlines()
    return lines[-1] if lines else f"import {module} failed"


def server_table(report: dict[str, Any], server: str, markdown: bool = False) -> str:
    header = ["system", "version", "enqueue/s", "bulk/s", "drain/s", "first->last/s",
              "start s", "p50 ms", "p99 ms", "tasks"]
    rows = [header]
    for name in report["systems"]:
        label, srv = SYSTEMS[name]
        if srv != server:
            continue
        r = report[name]
        if "skipped" in r:
            rows.append([label, "pending"] + ["-"] * (len(header) - 2))
            continue
        rows.append([label, r.get("version", "?"), fmt(get(r, "enqueue", "per_s")),
                     fmt(get(r, "bulk", "per_s")), fmt(get(r, "drain", "per_s")),
                     fmt(get(r, "drain", "steady_per_s")), fmt(get(r, "drain", "startup_s"), 2),
                     fmt(get(r, "roundtrip", "p50_ms"), 2), fmt(get(r, "roundtrip", "p99_ms"), 2),
                     fmt(get(r, "drain", "tasks"))])
    bare = report.get("bare", {})
    key = "lpush" if server == "redis" else "insert"
    what = "bare LPUSH (redis-py)" if server == "redis" else "bare INSERT (psycopg)"
    rows.append([what, get(bare, key, "client") or "-", fmt(get(bare, key, "per_s"))]
                + ["-"] * (len(header) - 3))
    if markdown:
        out = ["| " + " | ".join(header) + " |",
               "| " + " | ".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + " |"]
        out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        return "\n".join(out)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(widths[i]) if i < 2 else c.rjust(widths[i])
                               for i, c in enumerate(r)).rstrip() for r in rows)


def best(report: dict[str, Any], server: str, path: tuple[str, ...], lowest: bool = False,
         ) -> tuple[float | None, str]:
    """The best figure at `path` among the peers on `server`, and whose it is."""
    found = [(v, SYSTEMS[n][0]) for n in report["systems"]
             if SYSTEMS[n][1] == server and not n.startswith("conveyor")
             and isinstance(v := get(report[n], *path), int | float)]
    if not found:
        return None, "-"
    return (min if lowest else max)(found)


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with what was measured and whether it is met (None: not
    measured, e.g. conveyor's backend pending)."""
    out: list[dict[str, Any]] = []

    def add(what: str, value: float | None, need: float | None, text: str,
            lower_better: bool = False) -> None:
        ok = None if value is None or need is None else (
            value <= need if lower_better else value >= need)
        out.append({"target": what, "measured": text, "met": ok})

    for server, conv in (("redis", "conveyor-redis"), ("postgres", "conveyor-postgres")):
        c = report.get(conv, {})
        enq, drain = get(c, "enqueue", "per_s"), get(c, "drain", "per_s")
        p50, bulk = get(c, "roundtrip", "p50_ms"), get(c, "bulk", "per_s")
        if server == "redis":
            peer_drain, who_d = best(report, server, ("drain", "per_s"))
            peer_enq, who_e = best(report, server, ("enqueue", "per_s"))
            peer_p50, who_p = best(report, server, ("roundtrip", "p50_ms"), lowest=True)
            lpush = get(report, "bare", "lpush", "per_s")
            add("Redis: drain >= 1.5x the fastest peer", drain,
                None if peer_drain is None else 1.5 * peer_drain,
                f"{fmt(drain)}/s vs {who_d} {fmt(peer_drain)}/s = "
                f"{_x(ratio(drain, peer_drain))}")
            add("Redis: enqueue >= the fastest peer", enq, peer_enq,
                f"{fmt(enq)}/s vs {who_e} {fmt(peer_enq)}/s = {_x(ratio(enq, peer_enq))}")
            add("Redis: enqueue >= 75% of bare LPUSH", enq,
                None if lpush is None else 0.75 * lpush,
                f"{fmt(enq)}/s vs LPUSH {fmt(lpush)}/s = {_pct(ratio(enq, lpush))}")
            add("Redis: round-trip p50 <= the best peer", p50, peer_p50,
                f"{fmt(p50, 2)} ms vs {who_p} {fmt(peer_p50, 2)} ms", lower_better=True)
            add("Redis: map >= 3x single enqueue", bulk, None if enq is None else 3 * enq,
                f"{fmt(bulk)}/s vs {fmt(enq)}/s = {_x(ratio(bulk, enq))}")
        else:
            p = report.get("procrastinate", {})
            p_drain, p_enq = get(p, "drain", "per_s"), get(p, "enqueue", "per_s")
            p_p50 = get(p, "roundtrip", "p50_ms")
            add("PostgreSQL: drain >= 2x procrastinate", drain,
                None if p_drain is None else 2 * p_drain,
                f"{fmt(drain)}/s vs {fmt(p_drain)}/s = {_x(ratio(drain, p_drain))}")
            add("PostgreSQL: enqueue >= 2x procrastinate", enq,
                None if p_enq is None else 2 * p_enq,
                f"{fmt(enq)}/s vs {fmt(p_enq)}/s = {_x(ratio(enq, p_enq))}")
            add("PostgreSQL: round-trip p50 <= procrastinate", p50, p_p50,
                f"{fmt(p50, 2)} ms vs {fmt(p_p50, 2)} ms", lower_better=True)
    return out


def _x(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}x"


def _pct(r: float | None) -> str:
    return "-" if r is None else f"{100 * r:.1f}%"


def _mark(ok: bool | None) -> str:
    return "pending" if ok is None else ("met" if ok else "NOT met")


def show(report: dict[str, Any], markdown: bool = False) -> None:
    """Print the header line, a table per server and the targets of a report."""
    m, bare = report["machine"], report["bare"]
    print(f"\nconveyor {m['commit'] or '?'}; {m['nproc']} CPUs ({m['cpu'] or 'unknown'}), "
          f"Python {m['python']}; {get(bare, 'lpush', 'server') or 'Redis ?'}, "
          f"{get(bare, 'insert', 'server') or 'PostgreSQL ?'} (synchronous_commit="
          f"{get(bare, 'insert', 'synchronous_commit') or '?'}); {report['tasks']:,} tasks "
          f"({report['rq_tasks']:,} for forking RQ, {report['pg_tasks']:,} on PostgreSQL), "
          f"{report['roundtrips']} round trips, bulk batches of {report['batch']}; "
          f"load {m['loadavg_before'][0]:.2f} before, "
          f"{m['loadavg_after'][0]:.2f} after; {report['seconds']:.0f} s\n")
    for server, title in SERVERS.items():
        if any(SYSTEMS[n][1] == server for n in report["systems"]):
            print(f"{title}:\n{server_table(report, server, markdown)}\n")
    print("peers: " + ", ".join(report["peers"]))
    print("\ntargets:")
    width = max(len(t["target"]) for t in report["targets"])
    for t in report["targets"]:
        print(f"  {t['target'].ljust(width)}  {_mark(t['met']):8}  {t['measured']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"comma-separated, from: {', '.join(SYSTEMS)} (default: all)")
    parser.add_argument("--skip", default="", help="comma-separated systems to leave out")
    parser.add_argument("--tasks", type=int, default=10_000,
                        help="tasks per enqueue, drain and bulk measurement")
    parser.add_argument("--rq-tasks", type=int, default=1_000,
                        help="tasks for the forking RQ worker, which runs ~100/s")
    parser.add_argument("--pg-tasks", type=int, default=5_000,
                        help="tasks for conveyor and procrastinate on PostgreSQL")
    parser.add_argument("--roundtrips", type=int, default=300)
    parser.add_argument("--batch", type=int, default=500, help="tasks per bulk enqueue call")
    parser.add_argument("--bare-rows", type=int, default=10_000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379",
                        help="Redis base URL (dbs 13-15 are used and flushed)")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432",
                        help="PostgreSQL base URL (bench_* databases are created and dropped)")
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    parser.add_argument("--keep", action="store_true", help="keep the worker logs")
    parser.add_argument("--out", type=Path, default=RESULTS / "servers-latest.json")
    parser.add_argument("--show", type=Path, metavar="JSON",
                        help="measure nothing: print the tables of a saved run")
    args = parser.parse_args(argv)
    if args.show:
        show(json.loads(args.show.read_text()), args.markdown)
        return 0
    skip = {s for s in args.skip.split(",") if s}
    chosen = [s for s in args.systems.split(",") if s and s not in skip]
    unknown = [s for s in chosen if s not in SYSTEMS]
    if unknown:
        parser.error(f"unknown systems {', '.join(unknown)}: use {', '.join(SYSTEMS)}")
    chosen = [s for s in SYSTEMS if s in chosen]  # always in the same order

    started = time.monotonic()
    os.environ["GIT_OPTIONAL_LOCKS"] = "0"  # machine() runs `git status`: never lock the index
    os.environ["BENCH_REDIS"], os.environ["BENCH_PG"] = args.redis, args.pg
    peers_python = (peersenv.ensure() if any(not s.startswith("conveyor") for s in chosen)
                    else None)
    report: dict[str, Any] = {"machine": machine(), "systems": chosen, "tasks": args.tasks,
                              "rq_tasks": args.rq_tasks, "pg_tasks": args.pg_tasks,
                              "roundtrips": args.roundtrips,
                              "batch": args.batch, "peers": list(peersenv.REQUIREMENTS),
                              "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    load = report["machine"]["loadavg_before"][0]
    if load > 1.0:
        print(f"note: load average {load:.2f} before the run: other work is competing for "
              "the CPU", file=sys.stderr)
    tmp = Path(tempfile.mkdtemp(prefix="conveyor-bench-servers-"))
    here = BENCH_DIR
    print("bare LPUSH and INSERT ...", file=sys.stderr, flush=True)
    report["bare"] = run_json([sys.executable, str(here / "bare_servers.py"),
                               "--rows", str(args.bare_rows)])
    for name in chosen:
        if name in CONVEYOR_BACKENDS and (why := backend_missing(CONVEYOR_BACKENDS[name])):
            report[name] = {"skipped": f"backend not importable yet: {why}"}
            print(f"{name}: pending ({why})", file=sys.stderr, flush=True)
            continue
        python = sys.executable if name.startswith("conveyor") else str(peers_python)
        tasks = getattr(args, TASKS_OPTION[name]) if name in TASKS_OPTION else args.tasks
        print(f"{name} ...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        report[name] = run_json([python, str(here / "server_cases.py"), name, "--dir", str(tmp),
                                 "--tasks", str(tasks), "--roundtrips", str(args.roundtrips),
                                 "--batch", str(args.batch)])
        report[name]["wall_s"] = time.monotonic() - t0
    report["machine"]["loadavg_after"] = os.getloadavg()
    report["targets"] = targets(report)
    report["seconds"] = time.monotonic() - started
    if not args.keep:
        shutil.rmtree(tmp)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    show(report, args.markdown)
    print(f"raw numbers: {args.out}" + (f"; worker logs: {tmp}" if args.keep else ""))
    failed = 0
    for name in ("bare", *chosen):
        for step in ("", "drain", "roundtrip"):
            error = get(report, name, *([step] if step else []), "error")
            if error:
                failed += 1
                print(f"{name}{' ' + step if step else ''} failed: {error}", file=sys.stderr)
        if "skipped" in report.get(name, {}):
            print(f"{name}: {report[name]['skipped']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
