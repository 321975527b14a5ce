"""The peers' virtualenv, bench/.venv-peers: the Redis and PostgreSQL task queues conveyor is
compared with by bench/servers.py (Celery, RQ, Dramatiq, Huey, procrastinate) and their
clients. It is made on first use and kept (gitignored); none of them ever becomes a dependency
of the project. The versions are pinned so that runs compare like with like."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
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
_STAMP = VENV / ".bench-requirements"


def python() -> Path:
    return VENV / "bin" / "python"


def ensure() -> Path:
    """Create or update the venv when its requirements changed; return its python."""
    wanted = "\n".join(REQUIREMENTS)
    if python().exists() and _STAMP.exists() and _STAMP.read_text() == wanted:
        return python()
    print(f"setting up {VENV.relative_to(BENCH_DIR.parent)} ({', '.join(REQUIREMENTS)})",
          file=sys.stderr, flush=True)
    if not python().exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(python()), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    *REQUIREMENTS], check=True)
    _STAMP.write_text(wanted)
    return python()


if __name__ == "__main__":
    print(ensure())
