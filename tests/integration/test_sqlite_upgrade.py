"""A SQLite file made by conveyor's schema version 1 (before progress and revocation) is
upgraded in place by the first process that opens it, its messages kept."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from conveyor.backends.base import PROGRESS, REVOKED
from conveyor.backends.sqlite import SCHEMA, SCHEMA_VERSION, SqliteBackend
from conveyor.backends.sqlite_control import COLUMNS

NOW = 1_700_000_000.0


def version_1_file(path: Path) -> None:
    """The version-1 schema: today's without the columns version 2 added."""
    added = tuple(column.split()[0] + " " for column in COLUMNS)
    old = "\n".join(line for line in SCHEMA.splitlines()
                    if not line.strip().startswith(added)).replace(",\n);", "\n);")
    assert "progress" not in old and "revoked" not in old
    conn = sqlite3.connect(path)
    conn.executescript(old + "PRAGMA user_version = 1;")
    conn.execute("INSERT INTO conveyor_messages (id, queue, priority, ready_at, avail_at, body, "
                 "enqueued_at) VALUES ('old', 'q', 0, 0, 0, x'6f6c64', 0)")
    conn.commit()
    conn.close()


def test_a_version_1_file_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    version_1_file(path)
    backend = SqliteBackend(f"sqlite:///{path}")
    try:
        [d] = backend.claim(None, "w", NOW, 30, 10)
        assert (d.id, d.body) == ("old", b"old")
        assert backend.set_progress("old", d.token, b"half", NOW)
        assert backend.get_results(["old"], NOW)["old"].state == PROGRESS
        assert backend.revoke(["old"], NOW, True, b"x", 100) == [True]
        assert backend.revoked(["old"]) == {"old": True}
        assert backend.ack("old", d.token, b"x", NOW, state=REVOKED)
    finally:
        backend.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    conn.close()
    again = SqliteBackend(f"sqlite:///{path}")  # a second opening finds nothing to do
    assert again.get_results(["old"], NOW)["old"].state == REVOKED
    again.close()
