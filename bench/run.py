"""`make bench`: conveyor against Huey on SQLite, one command, about a minute.

For each queue (conveyor in this interpreter, Huey in bench/.venv-huey, made on first use):
enqueue rate of N `delay()` calls, drain rate of N queued no-op tasks by a worker with two
process-pool children (results stored), and the round-trip latency of `delay().get()`; plus
the bare sqlite3 INSERT rate for scale. Prints a side-by-side table and writes the raw numbers
to bench/results/latest.json. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchenv

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results"
LABELS = {"huey": "huey", "huey-normal": "huey NORMAL"}
TARGETS = {"enqueue_vs_huey": 2.0, "drain_vs_huey": 2.0, "roundtrip_p50_ms": 5.0}


def run_json(cmd: list[str]) -> dict[str, Any]:
    """Run a bench script and parse the JSON it prints last; its stderr passes through. A
    script that fails gives {"error": ...}, so the other systems are still measured."""
    out = subprocess.run(cmd, cwd=BENCH_DIR, stdout=subprocess.PIPE, text=True)
    lines = out.stdout.strip().splitlines()
    if out.returncode or not lines:
        return {"error": f"{Path(cmd[1]).name} exited with {out.returncode}"}
    return dict(json.loads(lines[-1]))


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), "")
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "commit": commit(),
            "sqlite": sqlite3.sqlite_version, "platform": platform.platform(),
            "loadavg_before": os.getloadavg()}


def commit() -> str:
    """HEAD, marked "+changes" when src/ differs from it: what was measured."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=BENCH_DIR.parent, capture_output=True,
                                  text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    head = git("rev-parse", "--short", "HEAD")
    return head + ("+changes" if head and git("status", "--porcelain", "src") else "")


def ratio(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else a / b


def get(d: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(report: dict[str, Any]) -> str:
    c = report["conveyor"]
    others = [(name, report[name]) for name in ("huey", "huey-normal") if name in report]
    header = ["", "conveyor"]
    for name, _ in others:
        header += [LABELS[name], "ratio"]
    rows: list[list[str]] = [header + ["target"]]

    def row(label: str, path: tuple[str, ...], digits: int = 0, target: str = "",
            higher_better: bool = True) -> None:
        a = get(c, *path)
        cells = [label, fmt(a, digits)]
        for _, other in others:
            b = get(other, *path)
            r = ratio(a, b) if higher_better else ratio(b, a)
            cells += [fmt(b, digits), "-" if r is None else f"{r:.2f}x"]
        rows.append(cells + [target])

    row("enqueue, delay() calls/s", ("enqueue", "per_s"), target=">= 2x huey")
    row("drain, tasks/s from worker start", ("drain", "per_s"), target=">= 2x huey")
    row("drain, tasks/s first->last result", ("drain", "steady_per_s"))
    row("worker start to first result, s", ("drain", "startup_s"), 2, higher_better=False)
    row("round trip p50, ms", ("roundtrip", "p50_ms"), 2, "< 5 ms", higher_better=False)
    row("round trip p99, ms", ("roundtrip", "p99_ms"), 2, higher_better=False)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) + 1)]
    lines = ["  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i])
                       for i, cell in enumerate(r)).rstrip() for r in rows]
    lines.append(f"bare sqlite3 INSERT, one transaction each, WAL: synchronous=NORMAL "
                 f"{fmt(get(report, 'bare', 'normal', 'per_s'))}/s, "
                 f"FULL {fmt(get(report, 'bare', 'full', 'per_s'))}/s")
    lines.append("ratio: conveyor's figure against the column to its left (higher is better "
                 "for conveyor)")
    return "\n".join(lines)


def verdicts(report: dict[str, Any]) -> dict[str, bool | None]:
    c, h = report["conveyor"], report.get("huey", {})
    enq = ratio(get(c, "enqueue", "per_s"), get(h, "enqueue", "per_s"))
    drain = ratio(get(c, "drain", "per_s"), get(h, "drain", "per_s"))
    p50 = get(c, "roundtrip", "p50_ms")
    return {"enqueue_2x_huey": None if enq is None else enq >= TARGETS["enqueue_vs_huey"],
            "drain_2x_huey": None if drain is None else drain >= TARGETS["drain_vs_huey"],
            "roundtrip_p50_under_5ms": None if p50 is None
            else p50 < TARGETS["roundtrip_p50_ms"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--roundtrips", type=int, default=300)
    parser.add_argument("--no-huey", action="store_true", help="measure conveyor only")
    parser.add_argument("--no-huey-normal", action="store_true",
                        help="skip Huey with synchronous=NORMAL (conveyor's setting)")
    parser.add_argument("--keep", action="store_true", help="keep the databases and worker logs")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args(argv)

    started = time.monotonic()
    huey_python = None if args.no_huey else benchenv.ensure()
    report: dict[str, Any] = {"machine": machine(), "tasks": args.tasks,
                              "roundtrips": args.roundtrips,
                              "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if report["machine"]["loadavg_before"][0] > 1.0:
        print(f"note: load average {report['machine']['loadavg_before'][0]:.2f} before the "
              "run: other work is competing for the CPU and the disk", file=sys.stderr)
    tmp = tempfile.mkdtemp(prefix="conveyor-bench-")
    work = Path(tmp)
    here = BENCH_DIR
    common = ["--dir", tmp, "--tasks", str(args.tasks), "--roundtrips", str(args.roundtrips)]
    print("bare sqlite3 ...", file=sys.stderr, flush=True)
    report["bare"] = run_json([sys.executable, str(here / "bare.py"), "--dir", tmp,
                               "--rows", str(args.tasks)])
    print("conveyor ...", file=sys.stderr, flush=True)
    report["conveyor"] = run_json([sys.executable, str(here / "cases.py"), "conveyor", *common])
    if huey_python is not None:
        for name in ("huey", "huey-normal")[:1 if args.no_huey_normal else 2]:
            print(f"{name} ...", file=sys.stderr, flush=True)
            report[name] = run_json([str(huey_python), str(here / "cases.py"), name, *common])
    report["machine"]["loadavg_after"] = os.getloadavg()
    report["verdicts"] = verdicts(report)
    report["seconds"] = time.monotonic() - started
    if not args.keep:
        shutil.rmtree(work)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    print(f"\nconveyor {m['commit'] or '?'}; {m['nproc']} CPUs ({m['cpu'] or 'unknown'}), "
          f"Python {m['python']}, SQLite {m['sqlite']}; {args.tasks:,} tasks, "
          f"{args.roundtrips} round trips; "
          f"load {m['loadavg_before'][0]:.2f} before, {m['loadavg_after'][0]:.2f} after\n")
    print(table(report))
    print(f"\ntargets: {', '.join(f'{k} {_mark(v)}' for k, v in report['verdicts'].items())}")
    print(f"raw numbers: {args.out}" + (f"; databases and logs: {work}" if args.keep else ""))
    failed = 0
    for name in ("bare", "conveyor", *LABELS):
        for step in ("", "drain", "roundtrip"):
            error = get(report, name, *([step] if step else []), "error")
            if error:
                failed += 1
                print(f"{name}{' ' + step if step else ''} failed: {error}", file=sys.stderr)
    return 1 if failed else 0


def _mark(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "NOT met")


if __name__ == "__main__":
    sys.exit(main())
