"""The one conformance suite every backend passes (memory, SQLite, Redis, PostgreSQL, yours).

Subclass `BackendConformance` in a module pytest collects (name it `Test...`) and implement
`make_backend` to return a fresh, empty backend::

    class TestMyBackend(BackendConformance):
        def make_backend(self, tmp_path: Path) -> Backend:
            return MyBackend(...)

Time never comes from the wall clock: every call gets `now` from a `FakeClock` that the test
moves, so nothing here sleeps. Only `wait`/`wait_for_work`, whose timeouts are real time by
contract, take a few milliseconds.
"""

from .base import LEASE, ConformanceBase, msg
from .control import ControlConformance
from .counters import CountersConformance
from .listing import ListingConformance
from .queueing import QueueingConformance
from .settling import SettlingConformance
from .state import StateConformance


class BackendConformance(QueueingConformance, SettlingConformance, StateConformance,
                         ControlConformance, CountersConformance, ListingConformance):
    """The whole backend contract as tests (see the module docstring)."""


__all__ = ["LEASE", "BackendConformance", "ConformanceBase", "msg"]
