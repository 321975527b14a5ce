"""memory:// specifics beyond the conformance suite."""

from __future__ import annotations

from conveyor.backends.base import Message
from conveyor.backends.memory import MemoryBackend


def test_a_claim_with_an_older_now_keeps_a_message_enqueued_meanwhile() -> None:
    """A claimer reads `now`, then waits for the lock while a producer enqueues a message ready
    at a later `now`: that claim skips the message, and the next one gets it (it used to be
    dropped from the ready heap for good)."""
    b = MemoryBackend()
    b.enqueue([Message("m1", "default", b"x", ready_at=100.0)], 100.0)
    assert b.claim(["default"], "w", 99.0, 60.0, 10) == []
    got = b.claim(["default"], "w", 100.5, 60.0, 10)
    assert [d.id for d in got] == ["m1"]
