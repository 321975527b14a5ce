"""Progress reports and revocation on SQLite (docs/control.md): the columns they add to the
message row (schema version 2), and the revoke transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from .base import REVOKED

# Version 1 -> 2: columns of the message row, so they go with it. `revoked`: 0 none, 1 revoked
# while running (must not run again), 2 also to be stopped; `progress`: the latest progress of
# the run whose lease token is `progress_token`, stored at `progress_at`.
COLUMNS = ("revoked INTEGER NOT NULL DEFAULT 0", "progress BLOB", "progress_token TEXT",
           "progress_at REAL")


def add_columns(conn: sqlite3.Connection) -> None:
    """Upgrade a version-1 file (another process may be doing the same)."""
    for column in COLUMNS:
        try:
            conn.execute(f"ALTER TABLE conveyor_messages ADD COLUMN {column}")
        except sqlite3.OperationalError as exc:
            if "duplicate column" not in str(exc).lower():
                raise


ReleaseKey = Callable[[sqlite3.Connection, str, str | None, float, float], None]


def revoke_in(conn: sqlite3.Connection, ids: Sequence[str], now: float, terminate: bool,
              data: bytes, result_ttl: float, release_key: ReleaseKey,
              ) -> tuple[list[bool], bool]:
    """In the caller's write transaction: drop waiting messages (REVOKED result), mark running
    ones. Returns the outcome per id and whether any result was stored."""
    out: list[bool] = []
    dropped = False
    for i in ids:
        row = conn.execute("SELECT token IS NOT NULL AND lease_until > ?, dedup_key, "
                           "dedup_retention FROM conveyor_messages WHERE id = ? AND dead = 0",
                           (now, i)).fetchone()
        if row is None:
            out.append(False)
            continue
        if row[0]:  # running: mark it for its worker; a mark never weakens
            conn.execute("UPDATE conveyor_messages SET revoked = max(revoked, ?) WHERE id = ?",
                         (2 if terminate else 1, i))
        else:  # waiting: it never runs (again)
            conn.execute("DELETE FROM conveyor_messages WHERE id = ?", (i,))
            conn.execute("INSERT OR REPLACE INTO conveyor_results VALUES (?, ?, ?, ?, ?)",
                         (i, REVOKED, data, now, now + result_ttl))
            release_key(conn, i, row[1], row[2], now)
            dropped = True
        out.append(True)
    return out, dropped
