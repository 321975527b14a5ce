"""A read-mostly view of one app's backend, for the command line and the dashboard.

It turns the backend's administration calls into plain values a person can read (dead letters
decoded into task name, arguments and reason; worker heartbeats into ages) and holds the few
admin actions (retry or purge dead letters, purge queues), so the CLI and the dashboard never
touch backend internals or message bodies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .backends.base import PENDING, TERMINAL_STATES, DeadLetter, WorkerInfo
from .envelope import Envelope
from .errors import SerializationError, TaskFailed
from .inspect_tasks import TaskDetail, TaskError, TaskEvent, TaskRow, find_tasks, task_detail
from .periodic import PeriodicInfo, periodic_status
from .stats import ActivityBucket, Counters, recent_activity, task_counters

if TYPE_CHECKING:
    from .app import Conveyor
    from .task import Task


@dataclass(frozen=True, slots=True)
class QueueInfo:
    name: str
    ready: int = 0
    scheduled: int = 0
    running: int = 0


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    id: str
    node: str
    pid: int | None
    pool: str
    concurrency: int | None
    queues: list[str] | None
    last_seen: float
    age: float  # seconds since the last heartbeat
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeadTask:
    """A dead letter, decoded. `task` is "?" (and `decode_error` says why) when the body cannot
    be read with this app's serializer and key."""

    id: str
    queue: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    reason: str
    died_at: float
    attempts: int
    decode_error: str | None = None


@dataclass(frozen=True, slots=True)
class TaskInfo:
    name: str
    queue: str
    priority: int
    retries: int
    timeout: float | None
    store_result: bool
    bind: bool
    is_async: bool
    options: dict[str, Any] = field(default_factory=dict)  # the non-default extras


@dataclass(frozen=True, slots=True)
class Status:
    queues: list[QueueInfo]
    workers: list[WorkerStatus]
    dead: int
    periodic: list[PeriodicInfo] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What is known about one task id: its state and, once finished, its value or error."""

    id: str
    state: str
    ready: bool
    value: Any = None
    error: TaskFailed | None = None
    progress: dict[str, Any] | None = None  # the latest progress report while it runs


class Inspector:
    """Queue stats, workers, dead letters and the task registry of one app."""

    def __init__(self, app: Conveyor) -> None:
        self.app = app

    def _now(self) -> float:
        return self.app.clock.now()

    # --- reading --------------------------------------------------------------------------
    def queues(self) -> list[QueueInfo]:
        """Every queue with messages, plus the app's known queues (at zero when empty)."""
        stats = self.app.backend.queue_stats(self._now())
        names = list(self.app.queues())
        names += sorted(q for q in stats if q not in names)
        out = []
        for name in names:
            s = stats.get(name)
            out.append(QueueInfo(name) if s is None
                       else QueueInfo(name, s.ready, s.scheduled, s.running))
        return out

    def workers(self) -> list[WorkerStatus]:
        now = self._now()
        return [_worker_status(w, now) for w in self.app.backend.workers(now)]

    def dead_letters(self, limit: int = 100, offset: int = 0) -> list[DeadTask]:
        """Oldest first."""
        return [self._decode_dead(d) for d in self.app.backend.dead_letters(limit, offset)]

    def dead_count(self) -> int:
        return self.app.backend.count_dead()

    def status(self) -> Status:
        return Status(self.queues(), self.workers(), self.dead_count(), self.periodic())

    def activity(self, minutes: int = 60) -> list[ActivityBucket]:
        """Tasks settled per minute over the last `minutes` (at most 120; the current minute
        last), oldest first, zeros for quiet minutes: the overview's throughput and failure
        charts. Workers send their counts about once a second, so the newest minute lags."""
        return recent_activity(self._read_counters, self._now(), minutes)

    def counters(self) -> Counters:
        """Cumulative task counts by task and outcome, lease losses and the run-time
        histogram (for /metrics). Tasks this app does not register are summed as "other"."""
        return task_counters(self._read_counters, self.app.tasks)

    def _read_counters(self, keys: Sequence[str]) -> dict[str, int]:
        return self.app.backend.read_counters(keys, self._now())

    def periodic(self) -> list[PeriodicInfo]:
        """Each periodic task with its schedule, last run (tick time and state, found by the
        ids of its recent ticks) and next run, sorted by name."""
        if not self.app.periodic_tasks:
            return []
        return periodic_status(self.app, self._now())

    def tasks(self) -> list[TaskInfo]:
        """The registered tasks, sorted by name."""
        return [_task_info(self.app, t) for _, t in sorted(self.app.tasks.items())]

    def outcome(self, task_id: str, wait: bool = False, timeout: float | None = None) -> Outcome:
        """The state of `task_id` (waiting for it to finish when `wait`); raises
        conveyor.TimeoutError when waiting runs out of time."""
        result = self.app.result(task_id)
        if wait:
            try:
                value = result.get(timeout=timeout)
            except TaskFailed as exc:
                return Outcome(task_id, result.state, True, None, exc)
            return Outcome(task_id, result.state, True, value)
        found = self.app.backend.get_results([task_id], self._now()).get(task_id)
        if found is None:
            return Outcome(task_id, PENDING, False)
        if found.state not in TERMINAL_STATES:
            from .control import decode_progress

            return Outcome(task_id, found.state, False, progress=decode_progress(self.app, found))
        decoded = self.app.decode_outcome(found, None, propagate=False)
        if isinstance(decoded, TaskFailed):
            return Outcome(task_id, found.state, True, None, decoded)
        return Outcome(task_id, found.state, True, decoded)

    def find_tasks(self, state: str | None = None, queue: str | None = None,
                   name: str | None = None, limit: int = 50, offset: int = 0) -> list[TaskRow]:
        """Tasks by state (ready, scheduled, running, success, failure, revoked, dead, or
        None for all: running, ready, scheduled, dead, then finished), queue and task name,
        `limit` (1..500) from `offset`. Orders: ready in claim order, scheduled by due time,
        running by lease end, dead oldest first, finished newest first (failure: dead
        letters, then failed results). A finished task has only its result, which records
        its task name but no queue: `queue` cannot filter success or revoked (ValueError),
        and with failure it lists dead letters only. Filtering by name decodes bodies and
        results, `inspect_tasks.SCAN_MAX` at most per call.
        Raises ValueError naming a bad argument."""
        return find_tasks(self.app, self._now(), state, queue, name, limit, offset)

    def task_detail(self, id: str) -> TaskDetail | None:
        """Everything stored about task `id` (None when nothing is): arguments, state,
        attempts, times, result or error, progress, dead-letter reason and a timeline."""
        return task_detail(self.app, self._now(), id)

    # --- admin actions --------------------------------------------------------------------
    def retry_dead(self, ids: Sequence[str] | None = None) -> list[str]:
        """Put dead letters back in their queue (all when `ids` is None); returns the ids."""
        return self.app.backend.retry_dead(None if ids is None else list(ids), self._now())

    def purge_dead(self, ids: Sequence[str] | None = None) -> int:
        return self.app.backend.purge_dead(None if ids is None else list(ids))

    def purge(self, queue: str | None = None) -> int:
        """Delete waiting messages of `queue` (every queue when None); running ones stay."""
        return self.app.backend.purge(queue, self._now())

    def migrate(self) -> str:
        """Create or upgrade the backend's schema; returns what happened, for a person."""
        backend = self.app.backend
        migrate = getattr(backend, "migrate", None)
        if callable(migrate):  # backends with versioned schemas (PostgreSQL) provide this
            done = list(migrate())
            if done:
                return f"applied {len(done)} migration(s): {', '.join(map(str, done))}"
            return "schema is up to date"
        backend.queue_stats(self._now())  # a cheap call that connects and creates the schema
        if self.app.url.startswith("memory:"):
            return "nothing to migrate: memory:// keeps nothing between processes"
        return "schema is ready (this backend creates and upgrades it on first use)"

    # --- decoding -------------------------------------------------------------------------
    def _decode_dead(self, d: DeadLetter) -> DeadTask:
        try:
            env = Envelope.from_dict(self.app.codec.decode(d.body))
        except SerializationError as exc:
            return DeadTask(d.id, d.queue, "?", [], {}, d.reason, d.died_at, d.delivery_count,
                            str(exc))
        return DeadTask(d.id, d.queue, env.task, env.args, env.kwargs, d.reason, d.died_at,
                        d.delivery_count)


def _worker_status(w: WorkerInfo, now: float) -> WorkerStatus:
    info = w.info
    node = info.get("node") or info.get("hostname") or w.id.split(":", 1)[0]
    queues = info.get("queues")
    return WorkerStatus(
        id=w.id,
        node=str(node),
        pid=_int_or_none(info.get("pid")),
        pool=str(info.get("pool") or "?"),
        concurrency=_int_or_none(info.get("concurrency")),
        queues=[str(q) for q in queues] if isinstance(queues, list) else None,
        last_seen=w.last_seen,
        age=max(0.0, now - w.last_seen),
        info=dict(info),
    )


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _task_info(app: Conveyor, task: Task[Any, Any]) -> TaskInfo:
    o = task.options
    extras: dict[str, Any] = {}
    bind = o.bind
    entry = app.periodic_tasks.get(task.name)
    if entry is not None:  # registered with bind=True to know its tick; show what the user set
        bind = entry.user_bind
        extras["periodic"] = repr(entry.schedule.describe())
    if o.retry.retries:
        extras["retry_delay"] = o.retry.delay
        if o.retry.backoff:
            extras["retry_backoff"] = o.retry.backoff
        if o.retry.jitter:
            extras["retry_jitter"] = True
    if o.retry_on != (Exception,):
        extras["retry_on"] = [e.__name__ for e in o.retry_on]
    if o.result_ttl is not None and entry is None:  # periodic tasks get one chosen for them
        extras["result_ttl"] = o.result_ttl
    if o.limits is not None:
        extras.update(o.limits.describe())
    return TaskInfo(o.name, o.queue, o.priority, o.retry.retries, o.timeout, o.store_result,
                    bind, task.is_async, extras)


__all__ = ["ActivityBucket", "Counters", "DeadTask", "Inspector", "Outcome", "QueueInfo",
           "Status", "TaskDetail", "TaskError", "TaskEvent", "TaskInfo", "TaskRow",
           "WorkerStatus"]
