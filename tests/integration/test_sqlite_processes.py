"""Many processes on one SQLite file, through the backend API: no lock error ever reaches a
caller, every message is delivered and acked once, and SIGKILL never loses a committed enqueue
nor corrupts the file.

Children are plain `python -c` subprocesses (the script below), so they import nothing from
the test tree and run the same under any pytest import mode.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

CHILD = r'''
import json, os, sys, time
from conveyor.backends.base import Ack, Message
from conveyor.backends.sqlite import SqliteBackend

role, url, n, count, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
backend = SqliteBackend(url)


def produce():
    """Enqueue `count` messages (singles, batches, dedup-keyed); ledger each id after the call
    returned. count < 0: forever, until killed."""
    ledger = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    i = calls = 0
    while count < 0 or i < count:
        kind = calls % 4  # a single, a single with a dedup key ("k" ids), 8 at once, 3 at once
        size = (1, 1, 8, 3)[kind] if count < 0 else min((1, 1, 8, 3)[kind], count - i)
        batch = [Message(f"p{n}-{i + k}" + ("k" if kind == 1 else ""), "qr"[(i + k) % 2],
                         b"x" * 64, priority=(i + k) % 3,
                         dedup_key=f"key-{n}-{i + k}" if kind == 1 else None,
                         dedup_retention=5.0 if kind == 1 else 0.0)
                 for k in range(size)]
        ids = backend.enqueue(batch, time.time())
        assert ids == [m.id for m in batch], (ids, batch)
        os.write(ledger, "".join(f"{x}\n" for x in ids).encode())
        i += size
        calls += 1


def consume():
    """Claim and ack until the parent says producers are done and nothing is left."""
    done_marker = out + ".done"
    acked, redelivered, rounds = [], [], 0
    while True:
        done = os.path.exists(done_marker)  # looked at BEFORE the claim: no lost wake-up
        batch = backend.claim(None, f"c{n}", time.time(), 600.0, 1 + rounds % 8)
        if not batch:
            if done:
                break
            time.sleep(0.002)
            continue
        rounds += 1
        redelivered += [d.id for d in batch if d.delivery_count != 1]
        if rounds % 2:
            ok = backend.settle([Ack(d.id, d.token, b"r") for d in batch], time.time())
        else:
            ok = [backend.ack(d.id, d.token, b"r", time.time()) for d in batch]
        assert all(ok), (batch, ok)
        acked += [d.id for d in batch]
    with open(out, "w") as f:
        json.dump({"acked": acked, "redelivered": redelivered}, f)


produce() if role == "produce" else consume()
backend.close()
'''


def spawn(role: str, url: str, n: int, count: int, out: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as err:
        return subprocess.Popen([sys.executable, "-c", CHILD, role, url, str(n), str(count),
                                 str(out)], stdout=err, stderr=subprocess.STDOUT)


def wait_all(procs: list[subprocess.Popen[bytes]], deadline: float) -> None:
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError("a child process did not finish in time") from None


def test_producers_and_consumers_share_one_file(tmp_path: Path) -> None:
    producers, consumers, each = 8, 4, 375  # 3,000 messages
    url = f"sqlite:///{tmp_path / 'q.db'}"  # a fresh file: the children race to create it
    deadline = time.monotonic() + 60
    cons = [spawn("consume", url, n, 0, tmp_path / f"c{n}.json", tmp_path / f"c{n}.log")
            for n in range(consumers)]
    prods = [spawn("produce", url, n, each, tmp_path / f"p{n}.ledger", tmp_path / f"p{n}.log")
             for n in range(producers)]
    wait_all(prods, deadline)
    for n in range(consumers):
        (tmp_path / f"c{n}.json.done").touch()
    wait_all(cons, deadline)

    logs = {p.name: p.read_text() for p in sorted(tmp_path.glob("*.log"))}
    assert {name: text for name, text in logs.items() if text} == {}  # nothing printed, ever
    assert [p.returncode for p in prods + cons] == [0] * (producers + consumers)

    ledgered = [line for n in range(producers)
                for line in (tmp_path / f"p{n}.ledger").read_text().split()]
    expected = set(ledgered)
    assert len(expected) == len(ledgered) == producers * each
    reports = [json.loads((tmp_path / f"c{n}.json").read_text()) for n in range(consumers)]
    acked = Counter(i for r in reports for i in r["acked"])
    assert set(acked) == expected
    assert [i for i, times in acked.items() if times != 1] == []
    assert [i for r in reports for i in r["redelivered"]] == []
    assert sum(bool(r["acked"]) for r in reports) >= 2  # claims really were concurrent

    with sqlite3.connect(tmp_path / "q.db") as db:
        assert db.execute("SELECT count(*) FROM conveyor_messages").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM conveyor_results").fetchone() == (len(expected),)
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_sigkilled_producers_lose_no_committed_message(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    db_path = tmp_path / "q.db"
    url = f"sqlite:///{db_path}"
    rounds, per_round = 3, 6
    deadline = time.monotonic() + 60
    n = 0
    for _ in range(rounds):
        started = []
        for _ in range(per_round):
            ledger = tmp_path / f"p{n}.ledger"
            started.append((spawn("produce", url, n, -1, ledger, tmp_path / f"p{n}.log"),
                            ledger))
            n += 1
        # Kill each at a random moment once it is enqueueing (a loaded machine may take
        # longer than the whole kill window just to start Python).
        while not all(ledger.exists() and ledger.stat().st_size for _, ledger in started):
            assert time.monotonic() < deadline, f"producers never started (seed {seed})"
            assert all(p.poll() is None for p, _ in started), f"a producer died (seed {seed})"
            time.sleep(0.01)
        procs = [(proc, time.monotonic() + rng.uniform(0.1, 1.2)) for proc, _ in started]
        for proc, kill_at in sorted(procs, key=lambda x: x[1]):
            time.sleep(max(0.0, kill_at - time.monotonic()))
            assert proc.poll() is None, f"producer exited early (seed {seed})"
            proc.send_signal(signal.SIGKILL)
        wait_all([p for p, _ in procs], deadline)
        assert all(p.returncode == -signal.SIGKILL for p, _ in procs)

    ledgered: set[str] = set()
    for ledger in tmp_path.glob("*.ledger"):
        text = ledger.read_text()
        complete = text[:text.rfind("\n") + 1]  # a line cut by the kill was not ledgered
        ledgered.update(complete.split())
    assert len(ledgered) >= 100, f"too few enqueues before the kills (seed {seed})"

    db = sqlite3.connect(db_path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        stored = {row[0] for row in db.execute("SELECT id FROM conveyor_messages")}
        keys = {row[0] for row in db.execute("SELECT message_id FROM conveyor_dedup")}
    finally:
        db.close()
    lost = sorted(ledgered - stored)
    assert lost == [], f"{len(lost)} enqueued message(s) lost, e.g. {lost[:5]} (seed {seed})"
    keyed = {i for i in stored if i.endswith("k")}
    assert keyed and keyed == keys  # a dedup-keyed message and its key are written together

    from conveyor.backends.sqlite import SqliteBackend

    backend = SqliteBackend(url)  # and the file still works as a queue
    try:
        stats = backend.queue_stats(time.time())
        assert sum(s.ready for s in stats.values()) == len(stored)
        assert len(backend.claim(None, "w", time.time(), 60, 10)) == 10
    finally:
        backend.close()
