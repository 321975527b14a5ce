"""The Huey app bench/servers.py compares with: RedisHuey on BENCH_BROKER_URL, results stored
(`store_none=True`, since Huey drops None results by default), one no-op task.
HUEY_BENCH_NOTIFY=1 sets `notify_result=True`: the worker then also pushes a notification per
result, on which `Result.get(blocking=True)` waits with BLPOP instead of polling."""

import os

from huey import RedisHuey

huey = RedisHuey("bench", url=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/13"),
                 results=True, store_none=True,
                 notify_result=os.environ.get("HUEY_BENCH_NOTIFY", "") == "1")


@huey.task()
def noop() -> None:
    """Does nothing; its result is stored all the same."""
