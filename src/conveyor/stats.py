"""Task counters kept in the backend: what workers did, for /metrics and the dashboard charts.

Workers are many processes on many machines and the dashboard is another process, so the
counts live in the backend's counters (`Backend.incr`), written by each worker process about
once a second (`worker/stats.py`) and read by the Inspector (`Backend.read_counters`). The key
layout, shared by both sides (every key starts with `stats:`):

    stats:n:<outcome>:<task>   tasks settled with that outcome, since the counter was created
    stats:N:<outcome>          the same over every task (so tasks this app does not register
                               still show up, as task "other")
    stats:h:<i>:<task>         runs that took at most DURATION_BUCKETS[i] seconds and more than
                               the bucket before (i = len(DURATION_BUCKETS): longer)
    stats:H:<i>                the same over every task
    stats:hs:<task>, stats:HS  total run time, in microseconds (counters are integers)
    stats:m:<minute>:<kind>    per minute (epoch seconds // 60) and ACTIVITY kind, over every
                               task; kept ACTIVITY_TTL seconds

Cumulative counters live TOTAL_TTL seconds from their creation (`incr` never extends a
counter), then start again at 0, which Prometheus reads as a counter reset.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

# The outcomes a worker counts. "retried": released for another attempt; "dead": sent to the
# dead letters without running to a failure (undecodable, unknown task, bad arguments, worker
# lost too often); "lease_lost": the settle was refused because another worker had taken over
# the lease (the outcome was discarded).
OUTCOMES = ("succeeded", "failed", "retried", "rejected", "dead", "expired", "revoked")
LEASE_LOST = "lease_lost"
COUNTED = (*OUTCOMES, LEASE_LOST)
# Prometheus' default buckets, in seconds.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# The kinds a minute of activity counts, and the outcomes each one sums.
ACTIVITY = {"succeeded": ("succeeded",), "failed": ("failed",), "retried": ("retried",),
            "dead": ("dead", "rejected")}
MINUTE = 60
ACTIVITY_MINUTES = 120  # how far back `Inspector.activity` can look
ACTIVITY_TTL = (ACTIVITY_MINUTES + 2) * MINUTE
TOTAL_TTL = 400 * 86400.0
OTHER = "other"  # the task label of counts for tasks the reading app does not register
READ_CHUNK = 500  # keys per read_counters call

ReadFn = Callable[[Sequence[str]], dict[str, int]]  # Backend.read_counters, `now` bound


def outcome_key(outcome: str, task: str | None) -> str:
    return f"stats:N:{outcome}" if task is None else f"stats:n:{outcome}:{task}"


def bucket_key(index: int, task: str | None) -> str:
    return f"stats:H:{index}" if task is None else f"stats:h:{index}:{task}"


def sum_key(task: str | None) -> str:
    return "stats:HS" if task is None else f"stats:hs:{task}"


def minute_key(minute: int, kind: str) -> str:
    return f"stats:m:{minute}:{kind}"


def bucket_index(seconds: float) -> int:
    """The histogram bucket of a run that took `seconds` (the first bound not below it)."""
    return bisect_left(DURATION_BUCKETS, seconds)


@dataclass(frozen=True, slots=True)
class ActivityBucket:
    """What every worker settled during one minute (`start`: epoch seconds). `dead` counts
    dead-lettered tasks that did not fail by raising (rejected, undecodable, unknown...)."""

    start: float
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    dead: int = 0


@dataclass(frozen=True, slots=True)
class TaskCounters:
    """Cumulative counts of one task name (or OTHER). `buckets` holds the cumulative
    Prometheus histogram: (upper bound in seconds, runs that took at most that), the last bound
    being infinity."""

    task: str
    outcomes: dict[str, int]  # every name in OUTCOMES, zeros included
    lease_losses: int
    buckets: list[tuple[float, int]]
    duration_sum: float  # seconds
    duration_count: int

    @property
    def retries(self) -> int:
        return self.outcomes.get("retried", 0)


@dataclass(frozen=True, slots=True)
class Counters:
    """Every task's counters, sorted by task name ("other" last, only when not zero)."""

    tasks: list[TaskCounters]

    def total(self, outcome: str) -> int:
        return sum(t.outcomes.get(outcome, 0) for t in self.tasks)

    @property
    def lease_losses(self) -> int:
        return sum(t.lease_losses for t in self.tasks)

    @property
    def retries(self) -> int:
        return self.total("retried")


def _task_keys(task: str | None) -> list[str]:
    keys = [outcome_key(o, task) for o in COUNTED]
    keys += [bucket_key(i, task) for i in range(len(DURATION_BUCKETS) + 1)]
    keys.append(sum_key(task))
    return keys


def _task_counters(name: str, values: Sequence[int]) -> TaskCounters:
    n = len(COUNTED)
    outcomes = dict(zip(OUTCOMES, values[:len(OUTCOMES)], strict=True))
    raw = values[n:n + len(DURATION_BUCKETS) + 1]
    buckets, running = [], 0
    for le, count in zip((*DURATION_BUCKETS, float("inf")), raw, strict=True):
        running += count
        buckets.append((le, running))
    return TaskCounters(name, outcomes, values[len(OUTCOMES)], buckets,
                        values[-1] / 1e6, running)


def task_counters(fetch: ReadFn, names: Iterable[str]) -> Counters:
    """The counters of `names` (the tasks the reader knows), plus OTHER: what the totals over
    every task hold beyond them. `fetch(keys)` returns the live counters among `keys`."""
    names = sorted(set(names))
    per_task = [_task_keys(n) for n in names]
    overall = _task_keys(None)
    keys = [k for ks in per_task for k in ks] + overall
    found = fetch_all(fetch, keys)
    tasks, known = [], [0] * len(overall)
    for name, ks in zip(names, per_task, strict=True):
        values = [found.get(k, 0) for k in ks]
        tasks.append(_task_counters(name, values))
        known = [a + b for a, b in zip(known, values, strict=True)]
    rest = [max(0, found.get(k, 0) - s) for k, s in zip(overall, known, strict=True)]
    if any(rest):
        tasks.append(_task_counters(OTHER, rest))
    return Counters(tasks)


def recent_activity(fetch: ReadFn, now: float, minutes: int) -> list[ActivityBucket]:
    """The last `minutes` minutes (the current one included), oldest first."""
    minutes = max(1, min(int(minutes), ACTIVITY_MINUTES))
    last = int(now // MINUTE)
    span = range(last - minutes + 1, last + 1)
    keys = [minute_key(m, kind) for m in span for kind in ACTIVITY]
    found = fetch_all(fetch, keys)
    return [ActivityBucket(float(m * MINUTE),
                           *(found.get(minute_key(m, kind), 0) for kind in ACTIVITY))
            for m in span]


def fetch_all(fetch: ReadFn, keys: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in range(0, len(keys), READ_CHUNK):
        out.update(fetch(keys[i:i + READ_CHUNK]))
    return out

