"""Task limits as values: the decorator options `rate_limit`, `concurrency`, `concurrency_key`
and `soft_timeout` checked into a `Limits`, and the window arithmetic the worker's gate
(`worker/limits.py`) uses. Pure: no I/O, no clock of its own.

A rate limit is kept with *fixed windows* shared by every worker: window `w` of a task is the
time span `[w * period, (w + 1) * period)` (epoch seconds, so every machine agrees on it up to
clock skew), and its counter `rate:<task>:<w>` is a backend `incr`. A start is admitted when its
increment returns at most `limit`. A refused start has still incremented the counter, past the
limit; how far past (`over`) is its place in the line of tasks waiting for a later window, so it
is given back to the window where that place falls, spread evenly across it (`defer_until`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from .errors import ConfigError

PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60,
           "h": 3600, "hr": 3600, "hour": 3600}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*([a-z]+)\s*$")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `limit` starts per `period` seconds (a fixed window), across all workers."""

    limit: int
    period: int
    text: str = ""

    def window(self, now: float) -> int:
        """The index of the window `now` falls in."""
        return math.floor(now / self.period + 1e-9)

    def key(self, task: str, window: int) -> str:
        return f"rate:{task}:{window}"

    @property
    def ttl(self) -> float:
        """How long a window's counter is kept: its own period, one more for late arrivals
        (clock skew), and a margin."""
        return 2 * self.period + 5

    def admits(self, count: int) -> bool:
        """Whether the start that brought the window's counter to `count` may run."""
        return count <= self.limit

    def defer_until(self, window: int, count: int) -> float:
        """When a start refused in `window` (its increment returned `count` > limit) should be
        tried again: it is the `over`-th in line, so it goes to the window `ceil(over / limit)`
        later, at its slot in that window (windows spread their `limit` places evenly), so
        that each later window sees about `limit` tries, not the whole backlog at once."""
        over = max(1, count - self.limit)
        ahead = (over - 1) // self.limit + 1
        place = (over - 1) % self.limit
        return (window + ahead) * self.period + place * self.period / self.limit

    def __str__(self) -> str:
        return self.text or f"{self.limit}/{self.period}s"


def parse_rate(value: object, task: str = "") -> RateLimit | None:
    """`"N/s"`, `"N/m"` or `"N/h"` (also `/sec`, `/min`, `/hour`, ...) -> RateLimit; None (or
    an empty string) -> no limit. Anything else is a ConfigError naming the value."""
    if value is None or value == "":
        return None
    where = f"task {task}: " if task else ""
    bad = ConfigError(f"{where}rate_limit={value!r} is not a rate: write 'N/s', 'N/m' or 'N/h' "
                      "with a whole number N >= 1 (e.g. rate_limit='100/m')")
    if not isinstance(value, str):
        raise bad
    m = _RATE.match(value.lower())
    if m is None or m.group(2) not in PERIODS or int(m.group(1)) < 1:
        raise bad
    return RateLimit(int(m.group(1)), PERIODS[m.group(2)], value.strip())


def check_concurrency(value: object, task: str = "") -> int | None:
    """`concurrency=N`: a whole number >= 1, or None for no limit."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"task {task}: concurrency={value!r} must be a whole number >= 1 "
                          "(or None for no limit)")
    return value


def slot_keys(task: str, concurrency: int, key: str | None = None) -> list[str]:
    """The lock keys of a task's concurrency slots (per `concurrency_key` value, if any)."""
    base = f"conc:{task}" if key is None else f"conc:{task}:{key}"
    return [f"{base}:{i}" for i in range(concurrency)]


ConcurrencyKey = Callable[[list[Any], dict[str, Any]], Any]
OPTIONS = ("rate_limit", "concurrency", "concurrency_key", "soft_timeout")


@dataclass(frozen=True, slots=True)
class Limits:
    """A task's limits (`TaskOptions.limits`; None when it has none)."""

    rate: RateLimit | None = None
    concurrency: int | None = None
    concurrency_key: ConcurrencyKey | None = None
    soft_timeout: float | None = None

    @property
    def gated(self) -> bool:
        """Whether a worker must admit each start (a rate or a concurrency limit)."""
        return self.rate is not None or self.concurrency is not None

    def describe(self) -> dict[str, Any]:
        """The limits as option=value pairs (for `conveyor tasks`)."""
        out: dict[str, Any] = {}
        if self.rate is not None:
            out["rate_limit"] = str(self.rate)
        if self.concurrency is not None:
            out["concurrency"] = self.concurrency
        if self.concurrency_key is not None:
            out["concurrency_key"] = getattr(self.concurrency_key, "__name__", "?")
        if self.soft_timeout is not None:
            out["soft_timeout"] = self.soft_timeout
        return out


def pop_limits(options: dict[str, Any], task: str, timeout: float | None) -> Limits | None:
    """Take this module's decorator options out of `options` and check them, naming the bad
    value. Returns None when the task has no limit at all."""
    found = {k: options.pop(k) for k in OPTIONS if k in options}
    rate = parse_rate(found.get("rate_limit"), task)
    concurrency = check_concurrency(found.get("concurrency"), task)
    key = found.get("concurrency_key")
    if key is not None:
        if not callable(key):
            raise ConfigError(f"task {task}: concurrency_key={key!r} must be a callable "
                              "(args, kwargs) -> str")
        if concurrency is None:
            raise ConfigError(f"task {task}: concurrency_key needs concurrency=N (N runs at "
                              "once per key)")
    soft = found.get("soft_timeout")
    if isinstance(soft, timedelta):
        soft = soft.total_seconds()
    if soft is not None:
        if isinstance(soft, bool) or not isinstance(soft, int | float) or soft <= 0:
            raise ConfigError(f"task {task}: soft_timeout={found['soft_timeout']!r} must be "
                              "seconds > 0 or a timedelta")
        soft = float(soft)
        if timeout is not None and soft >= timeout:
            raise ConfigError(f"task {task}: soft_timeout ({soft:g}s) must be less than "
                              f"timeout ({timeout:g}s), so the task can clean up before the "
                              "hard limit")
    if rate is None and concurrency is None and soft is None:
        return None
    return Limits(rate, concurrency, key, soft)
