"""The Huey app the benchmark compares with: SqliteHuey, results stored, one no-op task.

Huey's defaults are kept (WAL, and SQLite's default synchronous=FULL, which syncs the WAL on
every commit) except `store_none=True`, so the no-op's None result is stored as conveyor stores
it. HUEY_BENCH_SYNC=NORMAL switches to synchronous=NORMAL, conveyor's setting, for a
like-for-like comparison. The file comes from HUEY_BENCH_DB.
"""

import os
import sqlite3

from huey import SqliteHuey
from huey.storage import SqliteStorage


class NormalSyncStorage(SqliteStorage):
    """SqliteStorage with synchronous=NORMAL (Huey offers only FULL or OFF)."""

    def _create_connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection = super()._create_connection()
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn


class NormalSyncHuey(SqliteHuey):
    storage_class = NormalSyncStorage


_normal = os.environ.get("HUEY_BENCH_SYNC", "").upper() == "NORMAL"
huey = (NormalSyncHuey if _normal else SqliteHuey)(
    "bench", filename=os.environ.get("HUEY_BENCH_DB", "huey-bench.db"), results=True,
    store_none=True)


@huey.task()
def noop() -> None:
    """Does nothing; its result is stored all the same."""
