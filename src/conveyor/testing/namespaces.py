"""A namespace of its own on a backend for one test or one chaos run: a SQLite file, a Redis
key prefix, a PostgreSQL schema, removed afterwards, so runs never see each other's tasks.

Redis and PostgreSQL come from CONVEYOR_TEST_REDIS_URL / CONVEYOR_TEST_POSTGRES_URL (default:
the local servers).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

SERVER_URLS = {
    "redis": ("CONVEYOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "postgresql": ("CONVEYOR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
}


def server_url(kind: str) -> str:
    """The base URL of the `kind` ("redis" or "postgresql") server to test against."""
    env, default = SERVER_URLS[kind]
    return os.environ.get(env, default)


@contextlib.contextmanager
def fresh_namespace(kind: str, root: Path | None = None, tag: str = "chaos") -> Iterator[str]:
    """A URL on `kind` ("sqlite": a file in `root`; "redis"; "postgresql") with a namespace
    of its own, whose keys or schema are removed when the block ends."""
    if kind == "sqlite":
        if root is None:
            raise ValueError("a SQLite namespace needs a directory")
        yield f"sqlite:///{root / 'q.db'}"
        return
    base = server_url(kind)
    name = f"{tag}_{os.urandom(6).hex()}"
    sep = "&" if "?" in base else "?"
    if kind == "redis":
        try:
            yield f"{base}{sep}prefix={name}"
        finally:
            drop_redis_prefix(base, name)
    else:
        try:
            yield f"{base}{sep}schema={name}"
        finally:
            drop_postgres_schema(base, name)


def drop_redis_prefix(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i:i + 500])
    finally:
        client.close()


def drop_postgres_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
