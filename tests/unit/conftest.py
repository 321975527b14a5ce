"""Fixtures for the pure-logic unit tests: an in-memory app on a fake clock."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from conveyor import Conveyor, FakeClock


@pytest.fixture
def clock() -> FakeClock:
    # Starts at the real time, not FakeClock's default (2023): Result.get() waits through
    # Backend.wait, which reads wall time, so a fake clock far in the past would make every
    # stored result look expired (see test_executor.py::test_get_follows_the_app_clock).
    return FakeClock(start=time.time())


@pytest.fixture
def app(clock: FakeClock) -> Iterator[Conveyor]:
    a = Conveyor("memory://", clock=clock)
    yield a
    a.close()
