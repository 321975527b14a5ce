"""What one enqueue INSERT costs on conveyor's own schema, without conveyor's Python around it,
and what the WAL checkpoint and the random-id index add. For reading the enqueue profile.

    python bench/insert_costs.py [--rows 10000]

Each line is a fresh file, WAL, synchronous=NORMAL, one INSERT per transaction (as `delay()`
does). It reads the schema and the statement from conveyor.backends.sqlite, so it follows them
as they change; it changes nothing in conveyor.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path


def rate(schema: str, insert: str, pragmas: list[str], rows: int) -> float:
    with tempfile.TemporaryDirectory(prefix="conveyor-insert-") as tmp:
        conn = sqlite3.connect(Path(tmp) / "x.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        for pragma in pragmas:
            conn.execute(pragma)
        conn.executescript(schema)
        body = b"J" + b"x" * 180
        params = [(os.urandom(16).hex(), "default", 0, 1.0, 1.0, body, None, 0.0, 1.0)
                  for _ in range(rows)]
        t0 = time.perf_counter()
        for p in params:
            conn.execute(insert, p)
        elapsed = time.perf_counter() - t0
        conn.close()
    return rows / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="cost of conveyor's enqueue INSERT")
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args(argv)
    try:
        from conveyor.backends.sqlite import _INSERT, SCHEMA
    except ImportError as exc:
        raise SystemExit(f"conveyor's SQLite schema is not where this script looks: {exc}")
    plain_schema = SCHEMA.replace("id TEXT NOT NULL UNIQUE", "id TEXT NOT NULL")
    plain_insert = _INSERT.replace(" ON CONFLICT (id) DO NOTHING", "")
    cases = [
        ("conveyor's schema and INSERT", SCHEMA, _INSERT, []),
        ("  with wal_autocheckpoint = 10000 pages", SCHEMA, _INSERT,
         ["PRAGMA wal_autocheckpoint = 10000"]),
        ("  with no checkpoint in this connection", SCHEMA, _INSERT,
         ["PRAGMA wal_autocheckpoint = 0"]),
        ("  without the UNIQUE index on the random id", plain_schema, plain_insert, []),
    ]
    if plain_schema == SCHEMA:
        cases.pop()  # the schema changed: that variant no longer applies
    for label, schema, insert, pragmas in cases:
        print(f"{label:48s} {rate(schema, insert, pragmas, args.rows):9,.0f} rows/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
