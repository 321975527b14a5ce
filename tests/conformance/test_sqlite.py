"""The conformance suite on sqlite:///, one fresh file per test."""

from pathlib import Path

from conveyor.backends.base import Backend
from conveyor.backends.sqlite import SqliteBackend
from conveyor.testing.conformance import BackendConformance


class TestSqliteBackend(BackendConformance):
    def make_backend(self, tmp_path: Path) -> Backend:
        return SqliteBackend(f"sqlite:///{tmp_path / 'conveyor.db'}")
