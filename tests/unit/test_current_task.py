"""The shared-memory record of a child's current task."""

from __future__ import annotations

import multiprocessing

from conveyor.worker.current import SIZE, CurrentTask


def make() -> CurrentTask:
    return CurrentTask(multiprocessing.RawArray("B", SIZE))


def test_round_trip_and_latest_wins() -> None:
    cur = make()
    assert cur.read() is None
    assert cur.write(("id1", "tok1", "tasks.add", 1, 0))
    assert cur.write(("id2", "tok2", "tasks.mul", 3, 5))
    assert cur.read() == ("id2", "tok2", "tasks.mul", 3, 5)
    cur.clear()
    assert cur.read() is None


def test_a_torn_record_reads_as_unknown() -> None:
    cur = make()
    cur.write(("id1", "tok1", "tasks.add", 1, 0))
    cur.view[10] ^= 0xFF  # a child killed mid-write leaves bytes that fail the checksum
    assert cur.read() is None


def test_a_record_too_big_is_refused_and_clears() -> None:
    cur = make()
    cur.write(("id1", "tok1", "tasks.add", 1, 0))
    assert not cur.write(("x" * SIZE, "tok", "tasks.add", 1, 0))
    assert cur.read() is None


def test_shared_with_a_child_process() -> None:
    buffer = multiprocessing.get_context("fork").RawArray("B", SIZE)
    proc = multiprocessing.get_context("fork").Process(
        target=lambda: CurrentTask(buffer).write(("cid", "ctok", "tasks.x", 2, 1)))
    proc.start()
    proc.join(10)
    assert CurrentTask(buffer).read() == ("cid", "ctok", "tasks.x", 2, 1)
