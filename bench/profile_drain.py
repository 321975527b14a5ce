"""Profile one worker child during the drain benchmark with py-spy (wall time, C frames too).

    python bench/profile_drain.py [--system conveyor|huey|huey-normal] [--tasks 20000]

Queues the tasks, starts the worker (two process-pool children), attaches py-spy to one child
until every result is stored, and writes bench/results/profile-drain-SYSTEM.txt (py-spy raw
format; loads in speedscope) and a summary beside it, which it also prints. Sampling slows that
child, so the rate printed is not a benchmark figure: use `make bench` for those.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import benchenv
from pyspy_summary import summarise

BENCH_DIR = Path(__file__).resolve().parent
FOCUS = {"conveyor": "Slot.run", "huey": "Worker.loop", "huey-normal": "Worker.loop"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="profile one worker child during the drain")
    parser.add_argument("--system", choices=sorted(FOCUS), default="conveyor")
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--out-dir", type=Path, default=BENCH_DIR / "results")
    args = parser.parse_args(argv)
    py_spy = benchenv.ensure() and benchenv.py_spy()
    python = benchenv.python_for(args.system)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / f"profile-drain-{args.system}.txt"
    with tempfile.TemporaryDirectory(prefix="conveyor-profile-") as tmp:
        run = subprocess.run([str(python), str(BENCH_DIR / "cases.py"), args.system,
                              "--dir", tmp, "--tasks", str(args.tasks), "--only", "drain",
                              "--profile-child", str(out), "--py-spy", str(py_spy),
                              "--rate", str(args.rate)],
                             cwd=BENCH_DIR, check=True, stdout=subprocess.PIPE, text=True)
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    summary = summarise(out, FOCUS[args.system])
    drain = figures["drain"]
    summary = (f"{args.system}: drained {drain['completed']} tasks at {drain['per_s']:,.0f}/s "
               f"while child {figures.get('profiled_pid')} was sampled\n{summary}")
    out.with_suffix(".summary.txt").write_text(summary + "\n")
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
