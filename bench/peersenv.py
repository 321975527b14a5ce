"""The peers' virtualenv, bench/.venv-peers: the Redis and PostgreSQL task queues conveyor is
compared with by bench/servers.py (Celery, RQ, Dramatiq, Huey, procrastinate) and their
clients. It is made on first use and kept (gitignored); none of them ever becomes a dependency
of the project. The versions are pinned so that runs compare like with like."""

from __future__ import annotations

from pathlib import Path

from benchenv import BENCH_DIR, ensure_venv

VENV = BENCH_DIR / ".venv-peers"
REQUIREMENTS = (
    "celery==5.7.0",
    "kombu==5.7.0",
    "rq==3.0.0",
    "dramatiq==2.2.1",
    "huey==3.5.4",
    "procrastinate==3.10.0",
    "redis==8.1.0",
    "psycopg[binary]==3.3.9",
)


def python() -> Path:
    return VENV / "bin" / "python"


def ensure() -> Path:
    """Create or update the peers' venv when its requirements changed; return its python."""
    return ensure_venv(VENV, REQUIREMENTS)


if __name__ == "__main__":
    print(ensure())
