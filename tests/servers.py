"""Where the tests find Redis and PostgreSQL, and what happens when they are not there.

Locally a missing server skips its tests with a message saying how to run them; with `CI` set
(CI runs with `CI=true`) an unreachable server fails the test, so a broken service can never
turn into a silently green run. Each test gets its own namespace: a key prefix on Redis, a
schema on PostgreSQL, removed afterwards.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from conveyor.testing.namespaces import fresh_namespace, server_url

REDIS_URL = server_url("redis")
POSTGRES_URL = server_url("postgresql")

#: Run a module's `project` tests on SQLite, Redis and PostgreSQL:
#: `pytestmark = ON_EVERY_SERVER_BACKEND` (tests/e2e/conftest.py's `backend_kind` fixture).
ON_EVERY_SERVER_BACKEND = pytest.mark.parametrize("backend_kind",
                                                  ["sqlite", "redis", "postgresql"])

HOW_TO = {
    "redis": "start Redis on 127.0.0.1:6379 (redis-server) or set CONVEYOR_TEST_REDIS_URL",
    "postgresql": "start PostgreSQL on 127.0.0.1:5432 with a database `test` the current user "
                  "can use (trust auth) or set CONVEYOR_TEST_POSTGRES_URL",
}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def reachable(url: str, timeout: float = 1.0) -> str | None:
    """None when a TCP (or Unix socket) connection to the URL's server opens, else why not."""
    parts = urlsplit(url)
    try:
        if parts.scheme == "unix":
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(timeout)
                s.connect(parts.path)
        else:
            default = 6379 if parts.scheme.startswith("redis") else 5432
            with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default),
                                          timeout=timeout):
                pass
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def require(kind: str, url: str) -> None:
    """Skip (locally) or fail (in CI) when the server behind `url` cannot be reached."""
    why = reachable(url)
    if why is None:
        return
    unavailable("backend", f"{kind} is not reachable at {url} ({why}); to run these tests, "
                           f"{HOW_TO[kind]}")


def unavailable(what: str, text: str) -> None:
    """Skip (locally) or fail (in CI) a test whose `what` (a backend, a browser) is missing."""
    if in_ci():
        pytest.fail(f"CI is set, so a missing {what} is a failure: {text}", pytrace=False)
    pytest.skip(text)


def with_query(url: str, **params: str) -> str:
    sep = "&" if "?" in url else "?"
    return url + sep + "&".join(f"{k}={v}" for k, v in params.items())


def fresh_redis_url() -> Iterator[str]:
    """A Redis URL with a key prefix of its own; its keys are deleted afterwards."""
    require("redis", REDIS_URL)
    with fresh_namespace("redis", tag="ctest") as url:
        yield url


def fresh_postgres_url() -> Iterator[str]:
    """A PostgreSQL URL with a schema of its own; the schema is dropped afterwards."""
    require("postgresql", POSTGRES_URL)
    with fresh_namespace("postgresql", tag="ctest") as url:
        yield url
