"""The Dramatiq app bench/servers.py compares with: RedisBroker (BENCH_BROKER_URL) with the
Results middleware on a Redis backend (BENCH_RESULT_URL, its own database, so DBSIZE counts the
stored results), one no-op actor with store_results=True. Dramatiq's loggers at WARNING, as for
every system in the benchmark."""

import logging
import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

logging.getLogger("dramatiq").setLevel(logging.WARNING)

broker = RedisBroker(url=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/13"))
backend = RedisBackend(url=os.environ.get("BENCH_RESULT_URL", "redis://127.0.0.1:6379/14"))
broker.add_middleware(Results(backend=backend))
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="bench_noop", store_results=True)
def noop() -> None:
    """Does nothing; its (None) result is stored."""
