"""The queues bench/server_cases.py measures on Redis and PostgreSQL, behind one small interface.

Each system is imported only in the interpreter that runs it: conveyor in the project's
virtualenv, the peers (Celery, RQ, Dramatiq, Huey, procrastinate) in bench/.venv-peers, made by
bench/peersenv.py; none of them is ever a project dependency.

Where things live (the shared Redis db 0 is never touched; only these are flushed):
  Redis db 13   the peers' broker (queues; Huey and RQ also keep their results here)
  Redis db 14   the result backend of Celery and Dramatiq, alone there, so DBSIZE counts them
  Redis db 15   conveyor on Redis (prefix "bench"), and the bare LPUSH loop
  PostgreSQL    databases of our own, dropped and created anew for each system:
                bench_conveyor (schema "bench"), bench_procrastinate, bench_bare
BENCH_REDIS and BENCH_PG (set by bench/servers.py) give the servers' base URLs.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379").rstrip("/")
PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432").rstrip("/")
BROKER_DB, RESULT_DB, CONVEYOR_DB = 13, 14, 15
BROKER_URL = f"{REDIS}/{BROKER_DB}"
RESULT_URL = f"{REDIS}/{RESULT_DB}"

#: name -> (label, server): every system bench/servers.py knows, in the order it runs them.
SYSTEMS: dict[str, tuple[str, str]] = {
    "conveyor-redis": ("conveyor", "redis"),
    "celery": ("Celery", "redis"),
    "rq": ("RQ (forking Worker)", "redis"),
    "rq-simple": ("RQ (SimpleWorker)", "redis"),
    "dramatiq": ("Dramatiq", "redis"),
    "huey": ("Huey", "redis"),
    "huey-notify": ("Huey notify_result", "redis"),
    "conveyor-postgres": ("conveyor", "postgres"),
    "procrastinate": ("procrastinate", "postgres"),
}
PEERS_BIN = BENCH_DIR / ".venv-peers" / "bin"


def flush_redis(*dbs: int) -> None:
    import redis

    for db in dbs:
        assert db in (BROKER_DB, RESULT_DB, CONVEYOR_DB), "only the bench's own Redis dbs"
        redis.Redis.from_url(f"{REDIS}/{db}").flushdb()


def fresh_pg_database(name: str) -> str:
    """Drop and create database `name` (bench_* only); return its URL."""
    import psycopg

    assert name.startswith("bench_"), "only the bench's own databases"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{PG}/{name}"


def drop_pg_database(name: str) -> None:
    import psycopg

    assert name.startswith("bench_")
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def peer_bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


class System:
    """One queue: enqueue one task, enqueue many in one call (when it has a bulk API), count
    the finished ones, a blocking round trip, and the worker command(s)."""

    name = ""
    version = ""
    bulk_api: str | None = None  # what `bulk` calls, None when the system has no bulk enqueue
    poll = 0.005  # seconds between two counts during a drain
    stop_signal = signal.SIGTERM  # the worker's graceful stop
    roundtrip_note = ""

    def setup(self) -> None:
        """Fresh, empty storage; import the app."""

    def teardown(self) -> None:
        """Remove what setup made."""

    def enqueue(self) -> None:
        raise NotImplementedError

    def bulk(self, count: int) -> None:
        raise NotImplementedError

    def done(self, expected: int) -> int:
        """How many of the `expected` queued tasks have finished (results stored). Returns
        `expected` only when every one of them is."""
        raise NotImplementedError

    def roundtrip(self, timeout: float) -> None:
        """Enqueue one no-op and block until its result is stored."""
        raise NotImplementedError

    def worker_commands(self) -> list[list[str]]:
        """The worker process(es) to start from bench/: two processes running tasks in all."""
        raise NotImplementedError

    def worker_env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(BENCH_DIR), "BENCH_BROKER_URL": BROKER_URL,
                "BENCH_RESULT_URL": RESULT_URL}


class ConveyorSystem(System):
    """conveyor on Redis or PostgreSQL: the same bench/benchapp.py as the SQLite benchmark."""

    bulk_api = "task.map([() x BATCH])"
    roundtrip_note = "noop.delay().get(timeout=10)"

    def __init__(self, server: str) -> None:
        self.server = server
        self.name = f"conveyor-{server}"
        self.ids: list[str] = []
        if server == "redis":
            self.url = f"{REDIS}/{CONVEYOR_DB}?prefix=bench"
        else:
            self.url = f"{PG}/bench_conveyor?schema=bench"
            self.poll = 0.01

    def setup(self) -> None:
        if self.server == "redis":
            flush_redis(CONVEYOR_DB)
        else:
            fresh_pg_database("bench_conveyor")
        os.environ["CONVEYOR_URL"] = self.url  # read when benchapp is imported
        import benchapp

        import conveyor
        from conveyor.backends.base import SUCCESS

        self.version = conveyor.__version__
        self.app: Any = benchapp.app
        self.task: Any = benchapp.noop
        self.success = SUCCESS

    def teardown(self) -> None:
        self.app.close()
        if self.server == "redis":
            flush_redis(CONVEYOR_DB)
        elif not os.environ.get("BENCH_KEEP"):
            drop_pg_database("bench_conveyor")

    def enqueue(self) -> None:
        self.ids.append(self.task.delay().id)

    def bulk(self, count: int) -> None:
        self.task.map([()] * count)

    def done(self, expected: int) -> int:
        """Counts the messages left (ready, scheduled or running); when none is, checks that
        every enqueued task's SUCCESS result is stored."""
        backend = self.app.backend
        now = time.time()
        left = sum(s.ready + s.scheduled + s.running for s in backend.queue_stats(now).values())
        if left:
            return max(0, expected - left)
        stored = backend.get_results(self.ids, now)
        return sum(1 for r in stored.values() if r.state == self.success)

    def roundtrip(self, timeout: float) -> None:
        self.task.delay().get(timeout=timeout)

    def worker_commands(self) -> list[list[str]]:
        return [[sys.executable, "-m", "conveyor", "worker", "benchapp:app", "-c", "2",
                 "--log-level", "WARNING"]]

    def worker_env(self) -> dict[str, str]:
        return {**super().worker_env(), "CONVEYOR_URL": self.url}


class CelerySystem(System):
    name = "celery"
    roundtrip_note = "noop.delay().get(timeout=10) (the Redis result backend waits on pub/sub)"

    def setup(self) -> None:
        flush_redis(BROKER_DB, RESULT_DB)
        os.environ.update(BENCH_BROKER_URL=BROKER_URL, BENCH_RESULT_URL=RESULT_URL)
        import celery
        import celeryapp
        import redis

        self.version = celery.__version__
        self.task: Any = celeryapp.noop
        self.results = redis.Redis.from_url(RESULT_URL)

    def teardown(self) -> None:
        flush_redis(BROKER_DB, RESULT_DB)

    def enqueue(self) -> None:
        self.task.delay()

    def done(self, expected: int) -> int:
        return int(self.results.dbsize())  # one celery-task-meta-<id> key per stored result

    def roundtrip(self, timeout: float) -> None:
        self.task.delay().get(timeout=timeout)

    def worker_commands(self) -> list[list[str]]:
        # --without-gossip/mingle/heartbeat: no cluster chatter with other workers (there are
        # none); mingle alone would add about a second of start-up.
        return [[peer_bin("celery"), "-A", "celeryapp", "worker", "--pool", "prefork", "-c", "2",
                 "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
                 "--without-heartbeat"]]


class RQSystem(System):
    bulk_api = "Queue.enqueue_many([prepare_data(noop) x BATCH]) (one pipeline)"
    stop_signal = signal.SIGINT
    roundtrip_note = "q.enqueue(noop).latest_result(timeout=10) (XREAD BLOCK on the result stream)"

    def __init__(self, forking: bool) -> None:
        self.forking = forking
        self.name = "rq" if forking else "rq-simple"

    def setup(self) -> None:
        flush_redis(BROKER_DB)
        import redis
        import rq
        import rqapp

        self.version = rq.__version__
        self.conn = redis.Redis.from_url(BROKER_URL)
        self.queue = rq.Queue("default", connection=self.conn)
        self.fn = rqapp.noop
        self.finished_key = rq.registry.FinishedJobRegistry(queue=self.queue).key

    def teardown(self) -> None:
        flush_redis(BROKER_DB)

    def enqueue(self) -> None:
        self.queue.enqueue(self.fn)

    def bulk(self, count: int) -> None:
        data = self.queue.prepare_data(self.fn)
        self.queue.enqueue_many([data] * count)

    def done(self, expected: int) -> int:
        return int(self.conn.zcard(self.finished_key))

    def roundtrip(self, timeout: float) -> None:
        result = self.queue.enqueue(self.fn).latest_result(timeout=max(1, int(timeout)))
        if result is None or result.type != result.Type.SUCCESSFUL:
            raise RuntimeError(f"rq job: no successful result ({result!r})")

    def worker_commands(self) -> list[list[str]]:
        worker = "rq.worker.Worker" if self.forking else "rq.worker.SimpleWorker"
        return [[peer_bin("rq"), "worker-pool", "-n", "2", "-w", worker, "-u", BROKER_URL,
                 "--logging-level", "WARNING", "default"]]


class DramatiqSystem(System):
    name = "dramatiq"
    roundtrip_note = ("noop.send().get_result(block=True, timeout=10000) (BRPOPLPUSH on the "
                      "result key)")

    def setup(self) -> None:
        flush_redis(BROKER_DB, RESULT_DB)
        os.environ.update(BENCH_BROKER_URL=BROKER_URL, BENCH_RESULT_URL=RESULT_URL)
        import dramatiq
        import dramatiqapp
        import redis

        self.version = dramatiq.__version__
        self.actor: Any = dramatiqapp.noop
        self.results = redis.Redis.from_url(RESULT_URL)

    def teardown(self) -> None:
        flush_redis(BROKER_DB, RESULT_DB)

    def enqueue(self) -> None:
        self.actor.send()

    def done(self, expected: int) -> int:
        return int(self.results.dbsize())  # one dramatiq-results key per stored result

    def roundtrip(self, timeout: float) -> None:
        self.actor.send().get_result(block=True, timeout=int(timeout * 1000))

    def worker_commands(self) -> list[list[str]]:
        return [[peer_bin("dramatiq"), "dramatiqapp", "-p", "2", "-t", "1"]]


class HueySystem(System):
    stop_signal = signal.SIGINT  # Huey: SIGINT is the graceful stop, SIGTERM the immediate one

    def __init__(self, notify: bool) -> None:
        self.notify = notify
        self.name = "huey-notify" if notify else "huey"
        self.roundtrip_note = ("noop().get(blocking=True, timeout=10): "
                               + ("BLPOP on the result's notification key" if notify else
                                  "polls, first after 50 ms, then 1.15x longer each time"))

    def setup(self) -> None:
        flush_redis(BROKER_DB)
        os.environ.update(BENCH_BROKER_URL=BROKER_URL, HUEY_BENCH_NOTIFY="1" if self.notify
                          else "0")
        import huey
        import hueyredisapp

        self.version = huey.__version__
        self.huey: Any = hueyredisapp.huey
        self.task: Any = hueyredisapp.noop

    def teardown(self) -> None:
        flush_redis(BROKER_DB)

    def enqueue(self) -> None:
        self.task()

    def done(self, expected: int) -> int:
        return int(self.huey.storage.result_store_size())  # HLEN of the results hash

    def roundtrip(self, timeout: float) -> None:
        self.task().get(blocking=True, timeout=timeout)

    def worker_commands(self) -> list[list[str]]:
        return [[peer_bin("huey_consumer"), "hueyredisapp.huey", "-w", "2", "-k", "process",
                 "-q"]]

    def worker_env(self) -> dict[str, str]:
        return {**super().worker_env(), "HUEY_BENCH_NOTIFY": "1" if self.notify else "0"}


class ProcrastinateSystem(System):
    """procrastinate has no result store: a job has finished when its row's status is
    'succeeded'. Two worker processes (concurrency 1 each: its docs advise against concurrency
    with synchronous tasks); the round trip polls the job's status every ROUNDTRIP_POLL."""

    name = "procrastinate"
    bulk_api = "noop.batch_defer({} x BATCH) (one INSERT)"
    poll = 0.01
    ROUNDTRIP_POLL = 0.001
    roundtrip_note = ("noop.defer(), then SELECT status FROM procrastinate_jobs WHERE id = %s "
                      "every 1 ms until 'succeeded' (no result store, no completion wait)")

    def setup(self) -> None:
        url = fresh_pg_database("bench_procrastinate")
        os.environ["BENCH_PG_URL"] = url
        self.url = url
        import procrastinate
        import procrastinateapp
        import psycopg

        self.version = procrastinate.__version__
        self.app: Any = procrastinateapp.app
        self.task: Any = procrastinateapp.noop
        self.app.open()
        self.app.schema_manager.apply_schema()
        self.conn = psycopg.connect(url, autocommit=True)

    def teardown(self) -> None:
        self.conn.close()
        self.app.close()
        if not os.environ.get("BENCH_KEEP"):
            drop_pg_database("bench_procrastinate")

    def enqueue(self) -> None:
        self.task.defer()

    def bulk(self, count: int) -> None:
        self.task.batch_defer(*([{}] * count))

    def done(self, expected: int) -> int:
        """Counts the jobs still to do or doing (a partial index covers them); when none is,
        counts the succeeded ones."""
        left = self.conn.execute("SELECT count(*) FROM procrastinate_jobs WHERE status = ANY("
                                 "ARRAY['todo', 'doing']::procrastinate_job_status[])"
                                 ).fetchone()
        if left and left[0]:
            return max(0, expected - int(left[0]))
        row = self.conn.execute("SELECT count(*) FROM procrastinate_jobs "
                                "WHERE status = 'succeeded'").fetchone()
        return int(row[0]) if row else 0

    def roundtrip(self, timeout: float) -> None:
        job_id = self.task.defer()
        deadline = time.monotonic() + timeout
        while True:
            row = self.conn.execute("SELECT status FROM procrastinate_jobs WHERE id = %s",
                                    (job_id,)).fetchone()
            status = row[0] if row else None
            if status == "succeeded":
                return
            if status in ("failed", "cancelled", "aborted"):
                raise RuntimeError(f"procrastinate job {job_id}: {status}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"procrastinate job {job_id} still {status}")
            time.sleep(self.ROUNDTRIP_POLL)

    def worker_commands(self) -> list[list[str]]:
        one = [peer_bin("procrastinate"), "--app", "procrastinateapp.app", "--log-level",
               "warning", "worker", "--concurrency", "1"]
        return [one, list(one)]

    def worker_env(self) -> dict[str, str]:
        return {**super().worker_env(), "BENCH_PG_URL": self.url}


def make_system(name: str) -> System:
    if name in ("conveyor-redis", "conveyor-postgres"):
        return ConveyorSystem(name.split("-", 1)[1])
    if name == "celery":
        return CelerySystem()
    if name in ("rq", "rq-simple"):
        return RQSystem(forking=name == "rq")
    if name == "dramatiq":
        return DramatiqSystem()
    if name in ("huey", "huey-notify"):
        return HueySystem(notify=name == "huey-notify")
    if name == "procrastinate":
        return ProcrastinateSystem()
    raise SystemExit(f"unknown system {name!r}: use one of {', '.join(SYSTEMS)}")
