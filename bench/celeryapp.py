"""The Celery app bench/servers.py compares with: Redis broker (BENCH_BROKER_URL) and Redis
result backend (BENCH_RESULT_URL, its own database, so DBSIZE counts the stored results), one
no-op task whose None result is stored. Otherwise Celery's defaults."""

import os

from celery import Celery

app = Celery("bench", broker=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/13"),
             backend=os.environ.get("BENCH_RESULT_URL", "redis://127.0.0.1:6379/14"))
app.conf.update(task_ignore_result=False, worker_hijack_root_logger=True,
                broker_connection_retry_on_startup=True)


@app.task(name="bench.noop")
def noop() -> None:
    """Does nothing; its (None) result is stored as SUCCESS."""
