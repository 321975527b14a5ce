"""What only the Redis backend has: one round trip per hot call, fork and thread safety,
server-side wake-ups, recovery after a server restart, chunked administration."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.backends.base import Ack, Message, QueueStats
from conveyor.backends.redis import RedisBackend
from conveyor.backends.redis import backend as backend_module
from own_servers import free_port
from servers import fresh_redis_url

NOW = 1_700_000_000.0


@pytest.fixture
def redis_url() -> Iterator[str]:
    yield from fresh_redis_url()


@pytest.fixture
def backend(redis_url: str) -> Iterator[RedisBackend]:
    b = RedisBackend(redis_url)
    yield b
    b.close()


def count_calls(b: RedisBackend, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    calls: list[Any] = []
    real = b._wire._execute

    def counting(args: Any, head: bytes, script: Any) -> Any:
        calls.append("EVALSHA" if head else args[0])
        return real(args, head, script)

    monkeypatch.setattr(b._wire, "_execute", counting)
    return calls


def test_hot_calls_are_one_round_trip(backend: RedisBackend,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    backend.enqueue([Message("warm", "q", b"")], NOW)  # loads the scripts
    backend.settle_and_claim([], ["q"], "w", NOW, 30, 1)
    calls = count_calls(backend, monkeypatch)
    backend.enqueue([Message("one", "q", b"")], NOW)
    assert calls == ["EVALSHA"]
    backend.enqueue([Message(f"m{i}", "q", b"") for i in range(40)], NOW)
    batch = backend.claim(["q"], "w", NOW, 30, 16)
    calls.clear()
    done, nxt = backend.settle_and_claim([Ack(d.id, d.token, b"r") for d in batch], ["q"], "w",
                                         NOW, 30, 16)
    assert calls == ["EVALSHA"]
    assert done == [True] * 16 and len(nxt) == 16


def test_the_script_is_loaded_again_after_a_flush(backend: RedisBackend) -> None:
    backend.enqueue([Message("a", "q", b"")], NOW)
    backend._wire.command("SCRIPT", "FLUSH")
    assert backend.enqueue([Message("b", "q", b"")], NOW) == ["b"]
    assert [d.id for d in backend.claim(None, "w", NOW, 30, 5)] == ["a", "b"]


def test_a_forked_child_uses_its_own_connection(backend: RedisBackend) -> None:
    backend.enqueue([Message("m", "q", b"from the parent")], NOW)
    backend.get_results(["m"], NOW)  # the parent's connection is open
    pid = os.fork()
    if pid == 0:  # the child: claim and ack with the inherited backend object
        code = 1
        try:
            [d] = backend.claim(["q"], "w", NOW, 30, 1)
            code = 0 if backend.ack(d.id, d.token, d.body, NOW) else 2
            backend.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # the child's exit and close() left the parent's connection alone
    assert backend.get_results(["m"], NOW)["m"].data == b"from the parent"


def test_threads_share_one_backend(backend: RedisBackend) -> None:
    backend.enqueue([Message(f"m{i}", "q", b"") for i in range(200)], NOW)
    got: list[str] = []

    def work() -> None:
        while batch := backend.claim(["q"], "w", NOW, 30, 3):
            got.extend(d.id for d in batch)
            assert all(backend.settle([Ack(d.id, d.token, b"") for d in batch], NOW))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(got) == sorted(f"m{i}" for i in range(200))


def test_wait_blocks_cheaply_and_wakes_at_once(backend: RedisBackend) -> None:
    backend.enqueue([Message("slow", "q", b"")], NOW)
    [d] = backend.claim(["q"], "w", NOW, 30, 1)
    cpu0, wall0 = time.process_time(), time.monotonic()
    assert backend.wait(["slow"], 1.0, lambda: NOW)["slow"].state == "STARTED"
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    assert 0.95 <= wall < 5 and cpu / wall < 0.2, (cpu, wall)

    other = RedisBackend(backend.url)  # another connection, as another machine would be
    timer = threading.Timer(0.2, lambda: other.ack("slow", d.token, b"done", NOW))
    timer.start()
    t0 = time.monotonic()
    found = backend.wait(["slow"], 10, lambda: NOW)
    assert found["slow"].data == b"done" and time.monotonic() - t0 < 0.2 + 0.6
    timer.join()
    other.close()


def test_a_stale_wake_up_is_not_taken_for_a_new_run(backend: RedisBackend) -> None:
    """A result message left in the socket by an earlier wait on the same id (an earlier run)
    must not finish a wait on its re-run."""
    b2 = RedisBackend(backend.url)
    conn = backend._wire.state().conn
    key = frozenset({("c", backend._done_prefix + b"m")})
    for run in (b"first", b"second"):
        backend.enqueue([Message("m", "q", b"")], NOW)  # (the subscription rides along)
        [d] = backend.claim(["q"], "w", NOW, 30, 1)
        conn.want("results", key)
        backend.count_dead()  # a call: the subscription is in force
        b2.ack("m", d.token, run, NOW)  # published while nobody reads the socket
        conn.want("results", frozenset())  # what the earlier wait does when it returns
    backend.enqueue([Message("m", "q", b"")], NOW)  # a third run, waiting in the queue
    found = backend.wait(["m"], 0.3, lambda: NOW)
    assert found["m"].state == "PENDING", found
    b2.close()


def test_messages_count_only_after_their_subscription(redis_url: str) -> None:
    b = RedisBackend(redis_url)
    conn = b._wire.state().conn
    chan = b._done_prefix + b"x"
    conn.want("results", frozenset({("c", chan)}))
    b.count_dead()
    other = RedisBackend(redis_url)
    other._wire.command("PUBLISH", chan, b"old")
    conn.want("results", frozenset())
    conn.want("results", frozenset({("c", chan)}))
    b.count_dead()  # reads the "old" message, then the new subscription's confirmation
    other._wire.command("PUBLISH", chan, b"new")
    events = []
    while (e := conn.wait_event(time.monotonic() + 0.2)) is not None:
        events.append(e)
    assert [(e[2], e[3]) for e in events] == [(b"old", False), (b"new", True)]
    b.close()
    other.close()


def test_wait_for_work_wakes_for_a_delayed_message_when_due(backend: RedisBackend) -> None:
    now = time.time()
    backend.enqueue([Message("later", "q", b"", ready_at=now + 0.25)], now)
    assert backend.claim(["q"], "w", now, 30, 1) == []
    t0 = time.monotonic()
    backend.wait_for_work(["q"], 5)
    assert 0.2 <= time.monotonic() - t0 < 2.0
    assert [d.id for d in backend.claim(["q"], "w", time.time(), 30, 1)] == ["later"]


def test_wait_for_work_on_every_queue_hears_a_new_queue(backend: RedisBackend) -> None:
    other = RedisBackend(backend.url)
    backend.wait_for_work(None, 0.01)  # subscribed (a pattern) and idle
    timer = threading.Timer(0.1, lambda: other.enqueue([Message("m", "brand-new", b"")],
                                                      NOW))
    timer.start()
    t0 = time.monotonic()
    backend.wait_for_work(None, 10)
    assert time.monotonic() - t0 < 1.0
    timer.join()
    other.close()


def test_an_idle_worker_waits_on_the_idle_list(backend: RedisBackend,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    idle = f"{backend.prefix}:idle:q"
    backend.wait_for_work(["q"], 0.01)  # subscribes, gets on the idle list, looks
    st = backend._wire.state()
    assert backend._wire.command("LRANGE", idle, 0, -1) == [st.me]
    calls = count_calls(backend, monkeypatch)
    assert backend.claim(["q"], "w", NOW, 30, 1) == []
    backend.wait_for_work(["q"], 0.01)  # the empty claim said it all: no second look
    assert calls == ["EVALSHA"]
    backend.enqueue([Message("m", "q", b"")], NOW)  # wakes us: we leave the list
    assert backend._wire.command("LRANGE", idle, 0, -1) == []
    assert backend.claim(["q"], "w", NOW, 30, 1)
    assert not st.registered


def test_one_enqueue_wakes_one_idle_worker(redis_url: str) -> None:
    woken: list[int] = []
    ready = threading.Barrier(4)
    backends = [RedisBackend(redis_url) for _ in range(3)]

    def idle(n: int) -> None:
        b = backends[n]
        b.claim(["q"], f"w{n}", NOW, 30, 1)
        b.wait_for_work(["q"], 0.01)
        ready.wait()
        t0 = time.monotonic()
        b.wait_for_work(["q"], 1.0)
        if time.monotonic() - t0 < 0.5:
            woken.append(n)

    threads = [threading.Thread(target=idle, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    ready.wait()
    time.sleep(0.1)
    producer = RedisBackend(redis_url)
    producer.enqueue([Message("one", "q", b"")], NOW)
    for t in threads:
        t.join(10)
    assert len(woken) == 1
    for b in (*backends, producer):
        b.close()


def test_gone_workers_leave_the_idle_lists(backend: RedisBackend) -> None:
    idle = f"{backend.prefix}:idle:q"
    gone = RedisBackend(backend.url)
    gone.wait_for_work(["q"], 0.01)
    backend.wait_for_work(["q"], 0.01)
    assert len(backend._wire.command("LRANGE", idle, 0, -1)) == 2
    gone.close()
    time.sleep(0.05)
    backend.housekeeping(NOW)
    assert backend._wire.command("LRANGE", idle, 0, -1) == [backend._wire.state().me]
    t0 = time.monotonic()  # an enqueue skips a gone worker's channel
    timer = threading.Timer(0.1, lambda: gone.enqueue([Message("m", "q", b"")], NOW))
    timer.start()
    backend.wait_for_work(["q"], 5)
    assert time.monotonic() - t0 < 1.0
    timer.join()
    gone.close()


def test_chunked_administration(backend: RedisBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend_module, "CHUNK", 3)
    backend.enqueue([Message(f"m{i}", "q", b"", dedup_key=f"k{i}") for i in range(10)], NOW)
    dead = backend.claim(["q"], "w", NOW, 30, 7)
    for d in dead:
        backend.bury(d.id, d.token, "boom", NOW, result_ttl=1)
    assert backend.count_dead() == 7
    assert backend.retry_dead(None, NOW) == [d.id for d in dead]
    assert backend.purge("q", NOW) == 10
    assert backend.enqueue([Message("n", "q", b"", dedup_key="k0")], NOW) == ["n"]
    backend.housekeeping(NOW + 2)
    assert backend.get_results([d.id for d in dead], NOW) == {}
    assert backend._wire.command("SMEMBERS", f"{backend.prefix}:queues") == [b"q"]
    backend.purge(None, NOW)
    backend.housekeeping(NOW + 2)  # "q" is empty now: forgotten
    assert backend._wire.command("SMEMBERS", f"{backend.prefix}:queues") == []


def test_calls_work_again_after_a_server_restart(tmp_path: Path) -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
            "no", "--dir", str(tmp_path)]

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                RedisBackend(f"redis://127.0.0.1:{port}/0").count_dead()
                return proc
            except Exception:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    proc = start()
    b = RedisBackend(f"redis://127.0.0.1:{port}/0?timeout=1")
    try:
        b.enqueue([Message("a", "q", b"")], NOW)
        b.wait_for_work(["q"], 0.01)  # a subscribed listener, too
        proc.terminate()
        proc.wait(10)
        proc = start()
        # the idle connection died with the server: the next call just works (and the
        # server, which forgot the scripts, gets them again)
        assert b.enqueue([Message("b", "q", b"")], NOW) == ["b"]
        b.wait_for_work(["q"], 0.01)
        [d] = b.claim(["q"], "w", NOW, 30, 1)
        assert b.ack("b", d.token, b"ok", NOW)
        assert b.wait(["b"], 5, lambda: NOW)["b"].data == b"ok"
    finally:
        b.close()
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("seed", range(int(os.environ.get("RANDOM_SEEDS", "8"))))
def test_random_operations_match_the_reference(redis_url: str, seed: int) -> None:
    """Random sequences of every operation, on memory:// (the reference) and on Redis side by
    side, with the same clock: every answer must be the same."""
    import random

    from conveyor.backends.base import Bury, Release
    from conveyor.backends.memory import MemoryBackend

    rng = random.Random(seed)
    ref, red = MemoryBackend(), RedisBackend(redis_url)
    now = NOW
    held: list[tuple[str, str, str]] = []  # (id, reference token, redis token)
    ids = [f"m{i}" for i in range(12)]

    def same(a: Any, b: Any, what: str) -> None:
        assert a == b, f"step {step} ({what}): reference {a!r} != redis {b!r}"

    for step in range(250):  # noqa: B007 - `same` reports it
        op = rng.random()
        if op < 0.25:
            msgs = [Message(rng.choice(ids), rng.choice("ab"), rng.randbytes(3),
                            rng.choice([-1, 0, 0, 2]),
                            now + rng.choice([0, 0, 0, -1, 3, 10]),
                            rng.choice([None, None, "k1", "k2"]), rng.choice([0.0, 5.0]))
                    for _ in range(rng.randint(1, 3))]
            same(ref.enqueue(msgs, now), red.enqueue(msgs, now), "enqueue")
        elif op < 0.45:
            queues = rng.choice([None, ["a"], ["b"], ["a", "b"], []])
            limit, lease = rng.randint(1, 3), rng.choice([5.0, 20.0])
            a = ref.claim(queues, "w", now, lease, limit)
            b = red.claim(queues, "w", now, lease, limit)
            same([(d.id, d.queue, d.body, d.priority, d.delivery_count, d.lease_until)
                  for d in a], [(d.id, d.queue, d.body, d.priority, d.delivery_count,
                                 d.lease_until) for d in b], "claim")
            held += [(x.id, x.token, y.token) for x, y in zip(a, b, strict=True)]
        elif op < 0.65 and held:
            picks = [rng.choice(held) for _ in range(rng.randint(1, 3))]
            sa, sb = [], []
            for mid, ta, tb in picks:
                kind = rng.randrange(3)
                if kind == 0:
                    data = rng.choice([None, b"r"])
                    ttl = rng.choice([2.0, 100.0])
                    sa.append(Ack(mid, ta, data, result_ttl=ttl))
                    sb.append(Ack(mid, tb, data, result_ttl=ttl))
                elif kind == 1:
                    at, body = now + rng.choice([0, 4]), rng.choice([None, b"new"])
                    attempted = rng.random() < 0.6
                    sa.append(Release(mid, ta, at, body, attempted))
                    sb.append(Release(mid, tb, at, body, attempted))
                else:
                    data = rng.choice([None, b"tb"])
                    sa.append(Bury(mid, ta, "boom", data, 50.0))
                    sb.append(Bury(mid, tb, "boom", data, 50.0))
            same(ref.settle(sa, now), red.settle(sb, now), "settle")
        elif op < 0.72 and held:
            picks = [rng.choice(held) for _ in range(2)]
            ka = ref.extend([(m, ta) for m, ta, _ in picks], now, 10)
            kb = red.extend([(m, tb) for m, _, tb in picks], now, 10)
            same(sorted(m for m, ta, _ in picks if ta in ka),
                 sorted(m for m, _, tb in picks if tb in kb), "extend")
        elif op < 0.82:
            now += rng.choice([0.5, 1.0, 3.0, 6.0, 11.0])
        elif op < 0.86:
            if rng.random() < 0.5:
                pick = rng.sample(ids, 3)
                same(ref.retry_dead(pick, now), red.retry_dead(pick, now), "retry_dead")
            else:
                same(ref.retry_dead(None, now), red.retry_dead(None, now), "retry_dead all")
        elif op < 0.89:
            q = rng.choice([None, "a", "b"])
            same(ref.purge(q, now), red.purge(q, now), "purge")
        elif op < 0.91:
            pick = rng.choice([None, rng.sample(ids, 2)])
            same(ref.purge_dead(pick), red.purge_dead(pick), "purge_dead")
        elif op < 0.94:
            ref.housekeeping(now)
            red.housekeeping(now)
        else:
            key, owner = rng.choice(["x", "y"]), rng.choice(["alice", "bob"])
            same(ref.try_lock(key, owner, 5, now), red.try_lock(key, owner, 5, now), "lock")
            if rng.random() < 0.3:
                who = rng.choice(["alice", "bob"])
                same(ref.unlock(key, who), red.unlock(key, who), "unlock")
            same(ref.incr(key, 2, 4, now), red.incr(key, 2, 4, now), "incr")
        same(ref.get_results(ids, now), red.get_results(ids, now), "results")
        same(ref.queue_stats(now), {q: s for q, s in red.queue_stats(now).items()
                                    if s != QueueStats()}, "stats")
        same(ref.dead_letters(), red.dead_letters(), "dead letters")
    red.close()
