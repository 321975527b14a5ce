"""The conformance suite on memory://, the reference semantics."""

from pathlib import Path

from conveyor.backends.base import Backend
from conveyor.backends.memory import MemoryBackend
from conveyor.testing.conformance import BackendConformance


class TestMemoryBackend(BackendConformance):
    def make_backend(self, tmp_path: Path) -> Backend:
        return MemoryBackend()
