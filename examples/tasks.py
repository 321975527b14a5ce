"""The tasks of the tour: the module a worker loads (`conveyor worker tasks`) and the step
scripts import. Both must import it under the same name, `tasks`, because a task's name is
`<module>.<function>` (here `tasks.add`): run the worker from this directory.

The backend URL comes from CONVEYOR_URL; without it, every process uses `tour.db` beside
this file, so a worker and a script started from different directories still meet.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from conveyor import Conveyor, TaskContext

DEFAULT_URL = "sqlite:///" + str(Path(__file__).resolve().with_name("tour.db"))

app = Conveyor(os.environ.get("CONVEYOR_URL") or DEFAULT_URL)


@app.task
def add(a: int, b: int) -> int:
    return a + b


@app.task
def divide(a: float, b: float) -> float:
    """Fails with ZeroDivisionError when b is 0; no retries, so it fails at once."""
    return a / b


@app.task
def nap(i: int) -> dict[str, int]:
    """Sleeps one second; says which process ran it."""
    time.sleep(1.0)
    return {"i": i, "pid": os.getpid()}


@app.task
def square(x: int) -> int:
    """Bigger numbers finish first, yet `map(...).get()` keeps the order they were sent in."""
    time.sleep(0.03 * (9 - x) if 0 <= x <= 9 else 0)
    return x * x


@app.task(bind=True, retries=3, retry_delay=0.2, retry_on=(ConnectionError,))
def flaky(ctx: TaskContext, url: str) -> str:
    """Fails twice with a retryable error, then succeeds: retries at work."""
    if ctx.attempt < 3:
        raise ConnectionError(f"{url} did not answer (attempt {ctx.attempt})")
    return f"fetched {url} on attempt {ctx.attempt}"


@app.task
def echo(value: object) -> object:
    """Returns its argument: shows what survives the trip through JSON."""
    return value
