"""The conformance suite on redis://, a key prefix of its own per test; plus what only a Redis
URL has: prefixes that keep apps apart, rediss:// and unix:// URLs, an unreachable server,
and the eviction-policy warning."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import BackendUnavailable, ConfigError
from conveyor.backends import create_backend
from conveyor.backends.base import Backend, Message
from conveyor.backends.redis import RedisBackend
from conveyor.testing.conformance import BackendConformance
from own_servers import free_port
from servers import fresh_redis_url

NOW = 1_700_000_000.0


@pytest.fixture
def redis_url() -> Iterator[str]:
    yield from fresh_redis_url()


class TestRedisBackend(BackendConformance):
    @pytest.fixture
    def backend(self, redis_url: str) -> Iterator[Backend]:
        b = RedisBackend(redis_url)
        try:
            yield b
        finally:
            b.close()


def test_prefixes_keep_apps_apart(redis_url: str) -> None:
    other_url = redis_url.replace("prefix=", "prefix=other-")
    a, b = RedisBackend(redis_url), RedisBackend(other_url)
    try:
        assert a.prefix != b.prefix
        a.enqueue([Message("m", "q", b"a", dedup_key="k")], NOW)
        assert b.enqueue([Message("n", "q", b"b", dedup_key="k")], NOW) == ["n"]
        assert b.get_results(["m"], NOW) == {}
        assert [d.body for d in b.claim(None, "w", NOW, 30, 10)] == [b"b"]
        assert b.queue_stats(NOW)["q"].running == 1
        assert a.queue_stats(NOW)["q"].ready == 1
        assert [d.body for d in a.claim(["q"], "w", NOW, 30, 10)] == [b"a"]
        b.purge(None, NOW)
        b.housekeeping(NOW + 10**6)
        assert a.get_results(["m"], NOW)["m"].state == "STARTED"
    finally:
        a.close()
        b.close()
        cleanup = RedisBackend(other_url)
        keys = cleanup._wire.command("KEYS", f"{cleanup.prefix}:*")
        if keys:
            cleanup._wire.command("DEL", *keys)
        cleanup.close()


def test_url_options() -> None:
    b = RedisBackend("rediss://:pw@example.com:6380/2?prefix=shop&timeout=1.5&ssl_cert_reqs=none")
    assert (b.prefix, b._wire.timeout) == ("shop", 1.5)
    assert b._wire._kwargs["db"] == 2 and b._wire._kwargs["port"] == 6380
    assert b._wire._connection_class.__name__ == "SSLConnection"
    u = RedisBackend("unix:///run/redis.sock?db=3")
    assert (u.prefix, u._wire.timeout) == ("conveyor", 5.0)
    assert u._wire._kwargs["path"] == "/run/redis.sock" and u._wire._kwargs["db"] == 3
    assert isinstance(create_backend("redis://localhost"), RedisBackend)
    for bad in ("redis://:pw@host:notaport/0", "redis://h/0?timeout=0", "redis://h/0?prefix=",
                "unix://", "redis://h/0?timeout=soon"):
        with pytest.raises(ConfigError) as err:
            RedisBackend(bad)
        assert "pw" not in str(err.value)


def test_unix_socket_url(tmp_path: Path) -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    sock = tmp_path / "redis.sock"
    proc = subprocess.Popen([binary, "--port", "0", "--unixsocket", str(sock), "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        b = RedisBackend(f"unix://{sock}?db=2&prefix=sock")
        b.enqueue([Message("m", "q", b"x")], NOW)
        [d] = b.claim(["q"], "w", NOW, 30, 1)
        assert b.ack("m", d.token, b"ok", NOW)
        assert b.wait(["m"], 5, lambda: NOW)["m"].data == b"ok"
        b.close()
    finally:
        proc.terminate()
        proc.wait(10)


def test_unreachable_server_is_backend_unavailable() -> None:
    port = free_port()  # nothing listens there
    b = RedisBackend(f"redis://:hunter2@127.0.0.1:{port}/0?timeout=1")
    for call in (lambda: b.enqueue([Message("m", "q", b"")], NOW),
                 lambda: b.claim(None, "w", NOW, 30, 1),
                 lambda: b.wait(["m"], 5, lambda: NOW)):
        started = time.monotonic()
        with pytest.raises(BackendUnavailable) as err:
            call()
        assert time.monotonic() - started < 2.0
        text = str(err.value)
        assert "hunter2" not in text and "***" in text and str(port) in text, text
    started = time.monotonic()
    b.wait_for_work(["q"], 0.3)  # only a hint: it sleeps, the next claim reports the outage
    assert 0.25 < time.monotonic() - started < 2.0


@pytest.mark.parametrize("policy, warned", [("allkeys-lru", True), ("noeviction", False)])
def test_maxmemory_policy_warning(tmp_path: Path, policy: str, warned: bool) -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path),
                             "--maxmemory-policy", policy],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        b = RedisBackend(f"redis://127.0.0.1:{port}/0")
        deadline = time.monotonic() + 10
        while True:
            try:
                warnings = b.startup_warnings()
                break
            except BackendUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        if warned:
            [text] = warnings
            assert policy in text and "noeviction" in text
        else:
            assert warnings == []
        b.close()
    finally:
        proc.terminate()
        proc.wait(10)
