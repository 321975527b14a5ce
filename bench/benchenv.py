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


def python() -> Path:
    return VENV / "bin" / "python"


def py_spy() -> Path:
    return VENV / "bin" / "py-spy"


def ensure_venv(venv: Path, requirements: tuple[str, ...]) -> Path:
    """Create or update `venv` when its requirements changed; return its python. Shared by
    this venv and bench/peersenv.py's."""
    python_path = venv / "bin" / "python"
    stamp = venv / ".bench-requirements"
    wanted = "\n".join(requirements)
    if python_path.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python_path
    print(f"setting up {venv.relative_to(BENCH_DIR.parent)} ({', '.join(requirements)})",
          file=sys.stderr, flush=True)
    if not python_path.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python_path), "-m", "pip", "install", "-q",
                    "--disable-pip-version-check", *requirements], check=True)
    stamp.write_text(wanted)
    return python_path


def ensure() -> Path:
    """Create or update the Huey venv when its requirements changed; return its python."""
    return ensure_venv(VENV, REQUIREMENTS)


def python_for(system: str) -> Path:
    """The interpreter that runs `system`: this one for conveyor, the bench venv for Huey."""
    return Path(sys.executable) if system == "conveyor" else ensure()


if __name__ == "__main__":
    print(ensure())
