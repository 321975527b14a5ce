"""The SQLite backend's checkpoint keeps the WAL bounded under sustained load: past
WAL_RESTART_AT it truncates the log (which a passive checkpoint never does while readers keep
old frames in use), and it asks to be called again soon while the log grows."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from conveyor import Conveyor
from conveyor.backends import sqlite as sqlite_backend
from conveyor.backends.base import Message


def wal_size(db: Path) -> int:
    try:
        return os.stat(f"{db}-wal").st_size
    except FileNotFoundError:
        return 0


def fill(app: Conveyor, n: int, start: int = 0) -> None:
    now = time.time()
    body = b"J" + b"x" * 2000
    for i in range(start, start + n, 100):
        app.backend.enqueue([Message(f"m{j}", "default", body, 0, now)
                             for j in range(i, min(start + n, i + 100))], now)


def test_a_small_log_gets_a_passive_checkpoint_and_the_usual_pace(tmp_path: Path) -> None:
    app = Conveyor(f"sqlite:///{tmp_path / 'q.db'}")
    fill(app, 50)
    assert app.backend.checkpoint() is None
    app.close()


def test_a_big_log_is_started_over_once_readers_let_go(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    app = Conveyor(f"sqlite:///{db}")
    fill(app, 10)
    # A reader that keeps an old snapshot: no checkpoint can start the log over meanwhile,
    # so writes pile up in the WAL (what steady load does, one reader after another).
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM conveyor_messages").fetchone()
    fill(app, 6000, start=10)
    big = wal_size(db)
    assert big > sqlite_backend.WAL_RESTART_AT, big
    assert app.backend.checkpoint() == sqlite_backend.CHECKPOINT_BUSY_EVERY  # busy: call soon
    assert wal_size(db) >= big  # the reader still holds old frames: nothing could be cut
    reader.execute("COMMIT")
    reader.close()
    assert app.backend.checkpoint() == sqlite_backend.CHECKPOINT_BUSY_EVERY
    assert wal_size(db) == 0  # truncated, not merely checkpointed
    fill(app, 10, start=7000)  # the log starts over from the beginning
    assert 0 < wal_size(db) < 1024 * 1024
    with sqlite3.connect(db) as check:
        assert check.execute("SELECT count(*) FROM conveyor_messages").fetchone() == (6020,)
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    app.close()
