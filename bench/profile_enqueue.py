"""Profile the producer during the enqueue benchmark with py-spy (wall time, C frames too).

    python bench/profile_enqueue.py [--system conveyor|huey|huey-normal] [--tasks 40000]

Writes bench/results/profile-enqueue-SYSTEM.txt (py-spy raw format; loads in speedscope) and a
summary beside it (.summary.txt), which it also prints. Sampling slows the producer, so the rate
this run prints is not a benchmark figure: use `make bench` for those.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import benchenv
from pyspy_summary import summarise

BENCH_DIR = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="profile the producer during enqueue")
    parser.add_argument("--system", choices=["conveyor", "huey", "huey-normal"],
                        default="conveyor")
    parser.add_argument("--tasks", type=int, default=40_000)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--out-dir", type=Path, default=BENCH_DIR / "results")
    args = parser.parse_args(argv)
    py_spy = benchenv.ensure() and benchenv.py_spy()
    python = benchenv.python_for(args.system)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / f"profile-enqueue-{args.system}.txt"
    with tempfile.TemporaryDirectory(prefix="conveyor-profile-") as tmp:
        subprocess.run([str(py_spy), "record", "--rate", str(args.rate), "--idle", "--native",
                        "--format", "raw", "--output", str(out), "--",
                        str(python), str(BENCH_DIR / "cases.py"), args.system, "--dir", tmp,
                        "--tasks", str(args.tasks), "--only", "enqueue"],
                       cwd=BENCH_DIR, check=True)
    summary = summarise(out, "measure_enqueue")
    out.with_suffix(".summary.txt").write_text(summary + "\n")
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
