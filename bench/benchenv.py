"""The bench-only virtualenv, bench/.venv-huey: Huey (the queue we compare with) and py-spy
(the profiler). It is made on first use and kept (gitignored); neither package ever becomes a
dependency of the project."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
VENV = BENCH_DIR / ".venv-huey"
REQUIREMENTS = ("huey==3.5.4", "py-spy==0.4.3")
_STAMP = VENV / ".bench-requirements"


def python() -> Path:
    return VENV / "bin" / "python"


def py_spy() -> Path:
    return VENV / "bin" / "py-spy"


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


def python_for(system: str) -> Path:
    """The interpreter that runs `system`: this one for conveyor, the bench venv for Huey."""
    return Path(sys.executable) if system == "conveyor" else ensure()


if __name__ == "__main__":
    print(ensure())
