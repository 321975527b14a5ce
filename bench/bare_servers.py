"""The bare client limits, for scale: what one client can do with one command per call.

  LPUSH   redis-py, one `LPUSH` of a 200-byte value per call, single-threaded, on Redis db 15;
  INSERT  psycopg, autocommit (so one transaction, one commit, per row) single-row INSERTs into
          a small table shaped like a queue row (text id as primary key, queue, 200-byte body,
          priority, ready_at), in a database of its own (bench_bare), with the server's
          settings as they are (synchronous_commit is reported).

    python bench/bare_servers.py [--rows 10000] [--rounds 3]

Each is timed ROUNDS times and the best round is the limit (rounds are short, and a limit is
what the client achieves when nothing else gets in the way); every round is in the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import psycopg
import redis
from server_systems import CONVEYOR_DB, REDIS, drop_pg_database, flush_redis, fresh_pg_database

BODY = b"x" * 200  # about the size of a no-op task's message
SCHEMA = """CREATE TABLE queue_row (
    id text PRIMARY KEY,
    queue text NOT NULL,
    body bytea NOT NULL,
    priority integer NOT NULL DEFAULT 0,
    ready_at double precision NOT NULL
)"""


def best_of(rounds: list[float], rows: int) -> dict[str, Any]:
    return {"rows": rows, "seconds": min(rounds), "per_s": rows / min(rounds),
            "rounds_per_s": [rows / s for s in rounds]}


def lpush_rate(rows: int, rounds: int) -> dict[str, Any]:
    flush_redis(CONVEYOR_DB)
    client = redis.Redis.from_url(f"{REDIS}/{CONVEYOR_DB}")
    client.ping()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(rows):
            client.lpush("bench:bare", BODY)
        times.append(time.perf_counter() - t0)
    server = client.info("server")["redis_version"]
    flush_redis(CONVEYOR_DB)
    return {**best_of(times, rows), "client": f"redis-py {redis.__version__}",
            "server": f"Redis {server}"}


def insert_rate(rows: int, rounds: int) -> dict[str, Any]:
    url = fresh_pg_database("bench_bare")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(SCHEMA)
            sql = "INSERT INTO queue_row (id, queue, body, ready_at) VALUES (%s, %s, %s, %s)"
            times = []
            for _ in range(rounds):
                ids = [os.urandom(16).hex() for _ in range(rows)]
                t0 = time.perf_counter()
                for i in ids:
                    conn.execute(sql, (i, "default", BODY, time.time()))
                times.append(time.perf_counter() - t0)
            version = conn.execute("SHOW server_version").fetchone()
            sync = conn.execute("SHOW synchronous_commit").fetchone()
    finally:
        drop_pg_database("bench_bare")
    return {**best_of(times, rows), "client": f"psycopg {psycopg.__version__}",
            "server": f"PostgreSQL {version[0] if version else '?'}",
            "synchronous_commit": sync[0] if sync else "?"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="bare redis-py LPUSH and psycopg INSERT rates")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    print(json.dumps({"lpush": lpush_rate(args.rows, args.rounds),
                      "insert": insert_rate(args.rows, args.rounds)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
