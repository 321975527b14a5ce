"""Tasks with limits (docs/limits.md). A worker loads this module from this directory:

    cd examples && conveyor worker limits_tasks -c 4

The backend URL comes from CONVEYOR_URL; without it, `limits.db` beside this file.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from conveyor import Conveyor, TaskTimeout

DEFAULT_URL = "sqlite:///" + str(Path(__file__).resolve().with_name("limits.db"))

app = Conveyor(os.environ.get("CONVEYOR_URL") or DEFAULT_URL)


@app.task(rate_limit="5/s")
def call_partner_api(order_id: int) -> float:
    """The partner allows 5 calls a second, however many workers we run."""
    return time.time()  # when it ran


def customer_of(args: list[Any], kwargs: dict[str, Any]) -> str:
    """The concurrency key: the task's first argument, the customer."""
    return str(args[0])


@app.task(concurrency=1, concurrency_key=customer_of)
def rebuild_report(customer: str, part: int) -> list[float]:
    """One rebuild per customer at a time; different customers in parallel."""
    started = time.time()
    time.sleep(0.3)
    return [started, time.time()]


@app.task(concurrency=2)
def transcode(video_id: int) -> list[float]:
    """At most two at once across all workers (say, two licences)."""
    started = time.time()
    time.sleep(0.3)
    return [started, time.time()]


@app.task(soft_timeout=1.0, timeout=10)
def export(rows: int) -> str:
    """Stops itself cleanly at the soft limit; the hard one would kill it."""
    done = 0
    try:
        for _ in range(rows):
            time.sleep(0.01)  # writing one row
            done += 1
    except TaskTimeout:
        return f"partial export: {done} of {rows} rows, the rest next time"
    return f"full export: {done} rows"
