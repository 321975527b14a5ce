"""Creating and upgrading the schema: `schema.sql` for a new schema, the numbered files in
`migrations/` for an older one, in one transaction under an advisory lock (so concurrent first
users wait for each other instead of racing). Applied migrations are rows of
`conveyor_migrations`; a database newer than this conveyor is refused.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any

from ...errors import ConfigError
from ..base import redact
from .connections import Settings

_MIGRATION = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS conveyor_migrations (
    name       text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@cache
def migrations() -> tuple[tuple[str, str], ...]:
    """(name, sql) of every migration, in order: `0001_initial`, ..."""
    folder = resources.files(__package__).joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        if _MIGRATION.match(entry.name):
            found.append((entry.name[:-4], entry.read_text(encoding="utf-8")))
    found.sort()
    numbers = [int(name[:4]) for name, _ in found]
    if numbers != list(range(1, len(found) + 1)):
        raise RuntimeError(f"conveyor's PostgreSQL migrations are not numbered 1..n: {numbers}")
    return tuple(found)


@cache
def schema_sql() -> str:
    return resources.files(__package__).joinpath("schema.sql").read_text(encoding="utf-8")


def latest() -> str:
    return migrations()[-1][0]


def version_of(name: str | None) -> int:
    return int(name[:4]) if name else 0


def applied(conn: Any, settings: Settings) -> list[str] | None:
    """The migrations recorded in the schema, or None when it has no conveyor tables."""
    row = conn.execute("SELECT to_regclass(%s)",
                       (f"{settings.quoted_schema}.conveyor_migrations",)).fetchone()
    if row is None or row[0] is None:
        return None
    return [r[0] for r in conn.execute(
        f"SELECT name FROM {settings.quoted_schema}.conveyor_migrations ORDER BY name")]


def check_not_newer(names: list[str], settings: Settings) -> None:
    known = {name for name, _ in migrations()}
    unknown = sorted(set(names) - known)
    if unknown:
        raise ConfigError(
            f"schema {settings.schema!r} at {redact(settings.url)} has migration(s) "
            f"{', '.join(unknown)} that this conveyor does not know: it was upgraded by a "
            "newer conveyor; upgrade this one too")


def migrate(conn: Any, settings: Settings, *, from_scratch: bool = True) -> list[str]:
    """Bring the schema up to date on `conn` (autocommit, ours). Returns the migrations
    applied now. `from_scratch=False` runs the migration chain even on an empty schema (the
    schema test compares both ways)."""
    lock_key = f"conveyor-migrate:{settings.schema}"
    with conn.transaction():
        conn.execute("SET LOCAL statement_timeout = 0")
        conn.execute("SET LOCAL lock_timeout = 0")
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (lock_key,))
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {settings.quoted_schema}")
        conn.execute(f"SET LOCAL search_path TO {settings.quoted_schema}")
        conn.execute(BOOTSTRAP)
        done = [r[0] for r in conn.execute("SELECT name FROM conveyor_migrations")]
        check_not_newer(done, settings)
        pending = [(name, sql) for name, sql in migrations() if name not in done]
        if not pending:
            return []
        if not done and from_scratch:
            conn.execute(schema_sql())
        else:
            for _, sql in pending:
                conn.execute(sql)
        for name, _ in pending:
            conn.execute("INSERT INTO conveyor_migrations (name) VALUES (%s)", (name,))
        return [name for name, _ in pending]
