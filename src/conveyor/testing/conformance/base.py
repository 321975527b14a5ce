"""Fixtures and helpers shared by the conformance suite's parts."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from ...backends.base import (
    Backend,
    Delivery,
    Message,
    QueueStats,
)
from ...clock import FakeClock

LEASE = 30.0


def msg(id: str, queue: str = "q", body: bytes | None = None, *, priority: int = 0,
        ready_at: float = 0.0, key: str | None = None, retention: float = 0.0) -> Message:
    """A message whose body defaults to its id, so a delivery shows where it came from."""
    return Message(id, queue, id.encode() if body is None else body, priority, ready_at, key,
                   retention)


class ConformanceBase:
    """The backend contract as tests. Subclasses provide `make_backend`; the `backend` fixture
    closes what it made."""

    lease: float = LEASE

    def make_backend(self, tmp_path: Path) -> Backend:
        raise NotImplementedError("a conformance subclass returns a fresh, empty backend")

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[Backend]:
        b = self.make_backend(tmp_path)
        try:
            yield b
        finally:
            b.close()

    # --- helpers ----------------------------------------------------------------------------
    def put(self, backend: Backend, clock: FakeClock, *messages: Message) -> list[str]:
        return backend.enqueue(list(messages), clock.now())

    def take(self, backend: Backend, clock: FakeClock, queues: Sequence[str] | None = None,
             limit: int = 100, lease: float | None = None) -> list[Delivery]:
        return backend.claim(queues, "w1", clock.now(), self.lease if lease is None else lease,
                             limit)

    def take_one(self, backend: Backend, clock: FakeClock, queues: Sequence[str] | None = None,
                 lease: float | None = None) -> Delivery:
        got = self.take(backend, clock, queues, 1, lease)
        assert len(got) == 1, got
        return got[0]

    def state(self, backend: Backend, clock: FakeClock, id: str) -> str | None:
        found = backend.get_results([id], clock.now())
        return found[id].state if id in found else None

    @staticmethod
    def ids(deliveries: Sequence[Delivery]) -> list[str]:
        return [d.id for d in deliveries]

    @staticmethod
    def busy(stats: dict[str, QueueStats]) -> dict[str, QueueStats]:
        """Stats without all-zero queues (a backend may or may not list empty queues)."""
        return {q: s for q, s in stats.items() if s != QueueStats()}
