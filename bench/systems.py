"""The two queues under test behind one small interface, so bench/cases.py measures both the
same way. Each system is imported only in the interpreter that runs it: conveyor in the
project's virtualenv, Huey in bench/.venv-huey (it is never a project dependency)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any, Protocol

BENCH_DIR = Path(__file__).resolve().parent
SYSTEMS = ("conveyor", "huey", "huey-normal")


class System(Protocol):
    name: str
    version: str
    db_path: Path
    count_sql: str  # how many results are stored, read through a separate connection
    stop_signal: signal.Signals  # the signal that asks the worker to finish and exit

    def enqueue(self) -> None:
        """One `delay()` of the no-op task."""

    def roundtrip(self, timeout: float) -> None:
        """Enqueue one no-op and block until its result is stored."""

    def worker_command(self) -> list[str]:
        """The worker with two process-pool children, run from bench/."""

    def worker_env(self) -> dict[str, str]: ...


class ConveyorSystem:
    name = "conveyor"
    count_sql = "SELECT count(*) FROM conveyor_results"
    stop_signal = signal.SIGTERM

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        os.environ["CONVEYOR_URL"] = f"sqlite:///{db_path}"  # read when benchapp is imported
        import benchapp

        import conveyor

        self.version = conveyor.__version__
        self.task: Any = benchapp.noop

    def enqueue(self) -> None:
        self.task.delay()

    def roundtrip(self, timeout: float) -> None:
        self.task.delay().get(timeout=timeout)

    def worker_command(self) -> list[str]:
        return [sys.executable, "-m", "conveyor", "worker", "benchapp:app", "-c", "2",
                "--log-level", "INFO"]

    def worker_env(self) -> dict[str, str]:
        return {**os.environ, "CONVEYOR_URL": f"sqlite:///{self.db_path}",
                "PYTHONPATH": str(BENCH_DIR)}


class HueySystem:
    count_sql = "SELECT count(*) FROM kv"
    stop_signal = signal.SIGINT  # Huey: SIGINT is the graceful stop, SIGTERM the immediate one

    def __init__(self, db_path: Path, synchronous: str = "") -> None:
        """`synchronous=""` keeps Huey's default (FULL); "NORMAL" is conveyor's setting."""
        self.name = "huey-normal" if synchronous == "NORMAL" else "huey"
        self.db_path = db_path
        self.synchronous = synchronous
        os.environ["HUEY_BENCH_DB"] = str(db_path)
        os.environ["HUEY_BENCH_SYNC"] = synchronous
        import huey
        import hueyapp

        self.version = huey.__version__
        self.task: Any = hueyapp.noop

    def enqueue(self) -> None:
        self.task()

    def roundtrip(self, timeout: float) -> None:
        self.task().get(blocking=True, timeout=timeout)

    def worker_command(self) -> list[str]:
        consumer = Path(sys.executable).with_name("huey_consumer")
        return [sys.executable, str(consumer), "hueyapp.huey", "-w", "2", "-k", "process"]

    def worker_env(self) -> dict[str, str]:
        return {**os.environ, "HUEY_BENCH_DB": str(self.db_path),
                "HUEY_BENCH_SYNC": self.synchronous, "PYTHONPATH": str(BENCH_DIR)}


def make_system(name: str, db_path: Path) -> System:
    if name == "conveyor":
        return ConveyorSystem(db_path)
    if name == "huey":
        return HueySystem(db_path)
    if name == "huey-normal":
        return HueySystem(db_path, "NORMAL")
    raise SystemExit(f"unknown system {name!r}: use one of {', '.join(SYSTEMS)}")
