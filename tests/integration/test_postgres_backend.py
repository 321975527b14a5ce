"""What only the PostgreSQL backend has: enqueue inside the caller's transaction, schemas that
keep apps apart, LISTEN/NOTIFY wake-ups, connections per process across a fork, and
BackendUnavailable (quickly, password hidden) when the server is not there or restarts."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from conveyor import BackendUnavailable, ConfigError
from conveyor.backends import create_backend
from conveyor.backends.base import SUCCESS, Message
from conveyor.backends.postgres.backend import PostgresBackend
from conveyor.backends.postgres.connections import parse_postgres_url
from own_servers import OwnPostgres, free_port
from servers import POSTGRES_URL, fresh_postgres_url

NOW = 1_700_000_000.0


@pytest.fixture
def url() -> Iterator[str]:
    yield from fresh_postgres_url()


@pytest.fixture
def backend(url: str) -> Iterator[PostgresBackend]:
    b = PostgresBackend(url)
    try:
        yield b
    finally:
        b.close()


def app_connection(backend: PostgresBackend) -> psycopg.Connection[Any]:
    """The application's own connection to the same database (not in autocommit)."""
    return psycopg.connect(backend.settings.conninfo)


# --- enqueue inside the caller's transaction -----------------------------------------------
def test_enqueue_in_exists_once_the_transaction_commits(backend: PostgresBackend) -> None:
    with app_connection(backend) as conn:
        conn.execute("SELECT 1")  # the application's own work, in its transaction
        assert backend.enqueue_in(conn, [Message("m", "q", b"x", dedup_key="k"),
                                         Message("n", "q", b"y")], NOW) == ["m", "n"]
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert backend.get_results(["m", "n"], NOW) == {}  # not committed yet
        conn.commit()
    assert backend.get_results(["m"], NOW)["m"].state == "PENDING"
    assert backend.enqueue([Message("other", "q", b"", dedup_key="k")], NOW) == ["m"]
    assert [d.id for d in backend.claim(["q"], "w", NOW, 30, 10)] == ["m", "n"]


def test_enqueue_in_rolled_back_never_existed(backend: PostgresBackend) -> None:
    with app_connection(backend) as conn:
        backend.enqueue_in(conn, [Message("m", "q", b"x", dedup_key="k")], NOW)
        conn.rollback()
    assert backend.get_results(["m"], NOW) == {}
    assert backend.claim(["q"], "w", NOW, 30, 10) == []
    assert backend.enqueue([Message("other", "q", b"", dedup_key="k")], NOW) == ["other"]


def test_enqueue_in_notifies_workers_at_commit_only(backend: PostgresBackend) -> None:
    backend.migrate()
    with psycopg.connect(backend.settings.conninfo, autocommit=True) as listener:
        listener.execute(f'LISTEN "{backend.work_channel}"')
        with app_connection(backend) as conn:
            backend.enqueue_in(conn, [Message("m", "mail", b"x")], NOW)
            assert list(listener.notifies(timeout=0.3)) == []
            conn.commit()
        heard = list(listener.notifies(timeout=5, stop_after=1))
    assert [n.payload for n in heard] == ["mail"]


def test_enqueue_in_refuses_what_is_not_a_connection(backend: PostgresBackend) -> None:
    for bad in (None, "postgresql://x", object(),
                object.__new__(psycopg.AsyncConnection)):
        with pytest.raises(ConfigError, match="connection"):
            backend.enqueue_in(bad, [Message("m", "q", b"")], NOW)
    conn = app_connection(backend)
    conn.close()
    with pytest.raises(ConfigError, match="closed"):
        backend.enqueue_in(conn, [Message("m", "q", b"")], NOW)


def test_enqueue_in_with_psycopg2(backend: PostgresBackend) -> None:
    psycopg2 = pytest.importorskip("psycopg2")
    conn = psycopg2.connect(backend.settings.conninfo)
    try:
        assert backend.enqueue_in(conn, [Message("m", "q", b"\x00x"),
                                         Message("n", "q", b"", dedup_key="k"),
                                         Message("o", "q", b"", dedup_key="k")], NOW) == [
            "m", "n", "n"]
        conn.rollback()
        assert backend.enqueue_in(conn, [Message("m", "q", b"\x00x")], NOW) == ["m"]
        conn.commit()
    finally:
        conn.close()
    assert [d.body for d in backend.claim(["q"], "w", NOW, 30, 5)] == [b"\x00x"]


# --- URLs and schemas ------------------------------------------------------------------------
def test_url_options() -> None:
    s = parse_postgres_url("postgres://u:pw@db.example:6543/app?schema=shop&timeout=1.5"
                           "&pool=3&sslmode=require&application_name=mine")
    assert (s.schema, s.timeout, s.pool_size) == ("shop", 1.5, 3)
    assert s.conninfo == "postgres://u:pw@db.example:6543/app?sslmode=require&application_name=mine"
    assert "application_name" not in s.connect_kwargs  # the URL's own value wins
    assert "statement_timeout=1500" in s.connect_kwargs["options"]
    assert parse_postgres_url("postgresql://localhost/db").schema == "public"
    assert isinstance(create_backend("postgresql://localhost/db"), PostgresBackend)
    for bad in ("postgresql://u:pw@h/db?schema=a-b", "postgresql://u:pw@h/db?timeout=0",
                "postgresql://u:pw@h/db?pool=0", "postgresql://u:pw@h/db?timeout=soon",
                "postgresql://u:pw@h/db?schema=" + "x" * 64):
        with pytest.raises(ConfigError) as err:
            PostgresBackend(bad)
        assert "pw" not in str(err.value)


def test_schemas_keep_apps_apart(url: str) -> None:
    other_url = url.replace("schema=", "schema=other_")
    a, b = PostgresBackend(url), PostgresBackend(other_url)
    try:
        a.enqueue([Message("m", "q", b"a", dedup_key="k")], NOW)
        assert b.enqueue([Message("n", "q", b"b", dedup_key="k")], NOW) == ["n"]
        assert b.get_results(["m"], NOW) == {}
        assert [d.body for d in b.claim(None, "w", NOW, 30, 10)] == [b"b"]
        assert b.queue_stats(NOW)["q"].running == 1
        assert a.queue_stats(NOW)["q"].ready == 1
        b.purge(None, NOW)
        b.housekeeping(NOW + 10**6)
        assert [d.body for d in a.claim(["q"], "w", NOW, 30, 10)] == [b"a"]
        assert a.work_channel != b.work_channel
    finally:
        a.close()
        b.close()
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{b.settings.schema}" CASCADE')


# --- wake-ups --------------------------------------------------------------------------------
def timed(fn: Any) -> tuple[threading.Thread, list[float]]:
    """Run `fn` in a thread; the list gets the monotonic time it returned."""
    done: list[float] = []

    def run() -> None:
        fn()
        done.append(time.monotonic())

    t = threading.Thread(target=run)
    t.start()
    return t, done


def test_an_enqueue_wakes_a_waiting_worker_at_once(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The safety poll is made long, so only a notification can end the wait early.
    monkeypatch.setattr("conveyor.backends.postgres.backend.SAFETY_POLL", 8.0)
    worker, producer = PostgresBackend(url), PostgresBackend(url)  # as if two processes
    try:
        worker.wait_for_work(["q"], 0.01)  # listening from now on
        t, done = timed(lambda: worker.wait_for_work(["q"], 10))
        time.sleep(0.3)
        assert not done
        producer.enqueue([Message("other-queue", "elsewhere", b"")], time.time())
        time.sleep(0.3)
        assert not done, "woken by an enqueue to a queue it does not take"
        producer.enqueue([Message("m", "q", b"")], time.time())
        sent = time.monotonic()
        t.join(10)
        assert done and done[0] - sent < 6.0, "not woken by NOTIFY (the poll is 8 s here)"
    finally:
        worker.close()
        producer.close()


def test_a_scheduled_message_ends_the_wait_when_it_is_due(backend: PostgresBackend,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # The safety poll is made long, so only the due time can end the wait early.
    monkeypatch.setattr("conveyor.backends.postgres.backend.SAFETY_POLL", 8.0)
    backend.enqueue([Message("later", "q", b"", ready_at=time.time() + 0.5)], time.time())
    started = time.monotonic()
    backend.wait_for_work(["q"], 0.01)
    backend.wait_for_work(["q"], 20)
    assert time.monotonic() - started < 6.0  # due after 0.5 s; the safety poll is 8 s
    assert [d.id for d in backend.claim(["q"], "w", time.time(), 30, 1)] == ["later"]


def test_an_ack_wakes_a_waiting_get_at_once(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The safety poll is made long, so only a notification can end the wait early.
    monkeypatch.setattr("conveyor.backends.postgres.backend.SAFETY_POLL", 8.0)
    producer, worker = PostgresBackend(url), PostgresBackend(url)
    try:
        producer.enqueue([Message("m", "q", b"")], NOW)
        found: dict[str, Any] = {}
        t, done = timed(lambda: found.update(producer.wait(["m"], 10, lambda: NOW)))
        [d] = worker.claim(["q"], "w", NOW, 30, 1)
        time.sleep(0.3)
        assert not done
        assert worker.ack("m", d.token, b"42", NOW)
        sent = time.monotonic()
        t.join(10)
        assert done and done[0] - sent < 6.0, "not woken by NOTIFY (the poll is 8 s here)"
        assert (found["m"].state, found["m"].data) == (SUCCESS, b"42")
    finally:
        producer.close()
        worker.close()


# --- processes -------------------------------------------------------------------------------
def _child(b: PostgresBackend, q: Any) -> None:
    try:
        b.enqueue([Message("from-child", "q", b"c")], NOW)
        got = b.claim(["q"], "child", NOW, 30, 10)
        b.wait_for_work(["q"], 0.01)
        b.close()
        q.put(sorted(d.id for d in got))
    except BaseException as exc:
        q.put(repr(exc))


def test_a_forked_child_opens_its_own_connections(backend: PostgresBackend) -> None:
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    backend.enqueue([Message("from-parent", "q", b"p")], NOW)
    backend.wait_for_work(["q"], 0.01)  # the parent listens too
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    child = ctx.Process(target=_child, args=(backend, q))
    child.start()
    got = q.get(timeout=30)
    child.join(30)
    assert got == ["from-child", "from-parent"]
    assert child.exitcode == 0
    # the parent's pooled connection and listener were not touched by the child
    assert backend.get_results(["from-child"], NOW)["from-child"].state == "STARTED"
    backend.enqueue([Message("after", "q", b"")], NOW)
    assert [d.id for d in backend.claim(["q"], "w", NOW, 30, 10)] == ["after"]


# --- the server away -------------------------------------------------------------------------
def test_unreachable_server_is_backend_unavailable() -> None:
    port = free_port()  # nothing listens there
    b = PostgresBackend(f"postgresql://postgres:hunter2@127.0.0.1:{port}/db?timeout=1")
    for call in (lambda: b.enqueue([Message("m", "q", b"")], NOW),
                 lambda: b.claim(["q"], "w", NOW, 30, 1),
                 lambda: b.get_results(["m"], NOW),
                 lambda: b.wait(["m"], 5, lambda: NOW),
                 lambda: b.migrate()):
        started = time.monotonic()
        with pytest.raises(BackendUnavailable) as err:
            call()
        assert time.monotonic() - started < 2.0
        text = str(err.value)
        assert "hunter2" not in text and "***" in text and str(port) in text, text
    started = time.monotonic()
    b.wait_for_work(["q"], 0.5)  # a worker's idle wait never raises: it sleeps
    assert time.monotonic() - started < 2.0
    b.close()


def test_the_next_call_works_after_a_server_restart() -> None:
    own = OwnPostgres()
    try:
        own.start()
        b = PostgresBackend(own.url + "?timeout=2")
        b.enqueue([Message("m", "q", b"")], NOW)
        b.wait_for_work(["q"], 0.01)
        own.restart(down_for=0.5)
        # the pooled connection died with the server: it is thrown away, not used
        assert b.get_results(["m"], NOW)["m"].state == "PENDING"
        b.enqueue([Message("n", "q", b"")], NOW)
        [d] = b.claim(["q"], "w", NOW, 30, 1)
        found: dict[str, Any] = {}
        t, done = timed(lambda: found.update(b.wait(["m"], 10, lambda: NOW)))
        time.sleep(0.5)  # the listener reconnects too
        assert b.ack("m", d.token, b"ok", NOW)
        t.join(10)
        assert found["m"].data == b"ok"
        b.close()
    finally:
        own.remove()
