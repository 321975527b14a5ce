"""Local wake-ups of the SQLite backend: an idle worker and a waiting get() are woken at once
by another process's enqueue or result, and everything still works when the channel can't."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

from conveyor.backends.base import Ack, Message
from conveyor.backends.sqlite import SqliteBackend
from conveyor.backends.wake import (
    RESULTS,
    WORKERS,
    WakeChannel,
    channel_directory,
    wait_readable,
)


def test_notify_reaches_a_listener_of_its_kind_only(tmp_path: Path) -> None:
    channel = WakeChannel(str(tmp_path / "wake"))
    with channel.listening(WORKERS) as workers, channel.listening(RESULTS) as results:
        assert workers is not None and results is not None
        channel.notify(WORKERS)
        assert wait_readable(workers, 1.0)
        assert not wait_readable(results, 0.0)
    assert os.listdir(tmp_path / "wake") == [], "a listener removes its socket file"


def test_a_killed_listeners_socket_file_is_removed_by_the_next_sender(tmp_path: Path) -> None:
    directory = tmp_path / "wake"
    directory.mkdir()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(str(directory / "w999-1"))
    stale.close()  # the file stays, as after a SIGKILL
    WakeChannel(str(directory)).notify(WORKERS)
    assert os.listdir(directory) == []


def test_a_database_deep_in_the_tree_gets_a_short_channel_directory(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 100) / "q.db"
    directory = channel_directory(str(deep))
    assert len(directory) + 20 <= 107 and "conveyor-wake-" in directory
    assert directory == channel_directory(str(deep)), "producers and workers agree"
    assert channel_directory(str(tmp_path / "q.db")) == str(tmp_path / "q.db") + "-wake"


def test_a_path_too_long_for_a_socket_disables_the_channel(tmp_path: Path) -> None:
    channel = WakeChannel(str(tmp_path / ("x" * 120)))
    assert not channel.usable
    with channel.listening(WORKERS) as sock:
        assert sock is None
    channel.notify(WORKERS)  # a no-op, not an error


def test_an_enqueue_wakes_an_idle_worker_at_once(tmp_path: Path) -> None:
    backend = SqliteBackend(f"sqlite:///{tmp_path / 'q.db'}")
    backend.queue_stats(time.time())  # create the schema
    producer = SqliteBackend(f"sqlite:///{tmp_path / 'q.db'}")
    timer = threading.Timer(0.2, lambda: producer.enqueue(
        [Message("m1", "q", b"x", ready_at=time.time())], time.time()))
    timer.start()
    t0 = time.monotonic()
    backend.wait_for_work(["q"], 10.0)
    waited = time.monotonic() - t0
    timer.join()
    assert 0.15 < waited < 5.0, waited  # woken by the enqueue, long before the timeout


def test_a_stored_result_wakes_a_waiting_get_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    waiter, worker = SqliteBackend(url), SqliteBackend(url)
    worker.enqueue([Message("m1", "q", b"x")], time.time())
    (d,) = worker.claim(["q"], "w", time.time(), 60, 1)
    timer = threading.Timer(0.2, lambda: worker.settle(
        [Ack(d.id, d.token, b"J1")], time.time()))
    timer.start()
    t0 = time.monotonic()
    found = waiter.wait(["m1"], 10.0)
    waited = time.monotonic() - t0
    timer.join()
    assert found["m1"].state == "SUCCESS"
    assert waited < 5.0, waited
