"""The bare limit, for scale: one sqlite3 INSERT per call, each its own transaction, in WAL
mode. `synchronous=NORMAL` is conveyor's setting; `FULL` (SQLite's default, which SqliteHuey
keeps) syncs the WAL on every commit and is shown beside it, on fewer rows because it is slow.

    python bench/bare.py --dir /tmp/somewhere [--rows 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

BODY = b"x" * 200  # about the size of a no-op task's message


def insert_rate(path: Path, synchronous: str, rows: int) -> dict[str, Any]:
    conn = sqlite3.connect(path, isolation_level=None)  # autocommit: one transaction per INSERT
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, body BLOB)")
    ids = [os.urandom(16).hex() for _ in range(rows)]
    t0 = time.perf_counter()
    for i in ids:
        conn.execute("INSERT INTO t (id, body) VALUES (?, ?)", (i, BODY))
    elapsed = time.perf_counter() - t0
    conn.close()
    return {"synchronous": synchronous, "rows": rows, "seconds": elapsed,
            "per_s": rows / elapsed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="bare sqlite3 INSERT rate")
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--full-rows", type=int, default=2_000)
    args = parser.parse_args(argv)
    out = {"sqlite": sqlite3.sqlite_version,
           "normal": insert_rate(args.dir / "bare-normal.db", "NORMAL", args.rows),
           "full": insert_rate(args.dir / "bare-full.db", "FULL", args.full_rows)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
