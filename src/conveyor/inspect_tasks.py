"""Listing tasks and reading one task's detail, for `Inspector.find_tasks` and
`Inspector.task_detail` (the dashboard's tasks view and `GET /api/tasks`).

Everything comes from the backend's read-only primitives (`list_messages`, `list_results`,
`dead_letters`, `task_record`, `get_results`); bodies and results are decoded here with the
app's codec, so an undecodable body shows as task "?" with the reason instead of failing.

What can be listed follows from what backends keep: a message (waiting, running or dead) has
its queue and body, so its task name and arguments; a finished task has only its stored
result, which records the task name but no queue and no arguments (older successes were
stored without the name and list as "?"). So `queue` cannot filter finished tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .backends.base import (
    FAILURE,
    READY,
    REVOKED,
    RUNNING,
    SCHEDULED_KIND,
    SUCCESS,
    TERMINAL_STATES,
    DeadLetter,
    MessageRecord,
    ResultRecord,
    StoredResult,
    derived_state,
)
from .envelope import Envelope
from .errors import SerializationError, TaskFailed

if TYPE_CHECKING:
    from .app import Conveyor

#: The most records `find_tasks` decodes to filter by task name (or dead letters by queue) in
#: one call: a name that matches nothing among them gives an empty page rather than a scan of
#: the whole backend.
SCAN_MAX = 2000
SCAN_PAGE = 200
MAX_LIMIT = 500
UNKNOWN_TASK = "?"

# state filter (case-insensitive) -> the source listing it
_STATE_FILTERS = {
    "ready": READY, "pending": READY,
    "scheduled": SCHEDULED_KIND,
    "running": RUNNING, "started": RUNNING, "progress": RUNNING,
    "success": SUCCESS, "failure": FAILURE, "revoked": REVOKED,
    "dead": "dead",
}
#: The values `find_tasks(state=...)` accepts (any case).
STATE_FILTERS = ("ready", "scheduled", "running", "success", "failure", "revoked", "dead",
                 "pending", "started", "progress")


@dataclass(frozen=True, slots=True)
class TaskRow:
    """One task in a listing. `task` is "?" when not known: the body cannot be decoded
    (`decode_error` says why) or only an old SUCCESS result is left (stored without a name).
    `queue`, `attempts` and `priority` are None for a finished task (only its result is left).
    A dead letter reads FAILURE with its `dead_reason`."""

    id: str
    task: str
    state: str
    queue: str | None = None
    attempts: int | None = None
    priority: int | None = None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    enqueued_at: float | None = None
    ready_at: float | None = None
    finished_at: float | None = None
    worker: str | None = None
    dead_reason: str | None = None
    decode_error: str | None = None


@dataclass(frozen=True, slots=True)
class TaskError:
    """How a task failed (or was revoked), as the worker stored it."""

    exc_type: str
    message: str
    traceback: str = ""


@dataclass(frozen=True, slots=True)
class TaskEvent:
    time: float
    event: str


@dataclass(frozen=True, slots=True)
class TaskDetail:
    """Everything known about one task id. Times are epoch seconds, None when not stored:
    `started_at` is known only while a progress report of the current run exists (the time of
    that report is an upper bound, so it is left None; the timeline shows the report)."""

    id: str
    task: str
    state: str
    queue: str | None = None
    priority: int | None = None
    attempts: int | None = None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    enqueued_at: float | None = None
    ready_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    lease_until: float | None = None
    worker: str | None = None
    expires_at: float | None = None  # the task's own expiry (expires= when enqueued)
    result_expires_at: float | None = None
    value: Any = None
    error: TaskError | None = None
    progress: dict[str, Any] | None = None
    dead_reason: str | None = None
    decode_error: str | None = None
    timeline: list[TaskEvent] = field(default_factory=list)


def _state_source(state: str | None) -> str | None:
    if state is None or state == "":
        return None
    source = _STATE_FILTERS.get(state.lower())
    if source is None:
        raise ValueError(f"'state' must be one of {', '.join(STATE_FILTERS)}, not {state!r}")
    return source


def check_page(limit: int, offset: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"'limit' must be between 1 and {MAX_LIMIT}, not {limit}")
    if offset < 0:
        raise ValueError(f"'offset' must be >= 0, not {offset}")


# A source: fetch(limit, offset) -> rows, count() -> how many rows it has (None: unknown),
# and a filter rows must pass (None: all do, so offsets can be skipped by count).
_Fetch = Callable[[int, int], list[TaskRow]]
_Count = Callable[[], int | None]
_Keep = Callable[[TaskRow], bool] | None


def find_tasks(app: Conveyor, now: float, state: str | None, queue: str | None,
               name: str | None, limit: int, offset: int) -> list[TaskRow]:
    """See `Inspector.find_tasks`."""
    check_page(limit, offset)
    source = _state_source(state)
    queue = queue or None
    name = name or None
    if queue is not None and source in (SUCCESS, REVOKED):
        raise ValueError(f"'queue' cannot filter {source} tasks: a finished task's result "
                         "records no queue")
    backend = app.backend
    counts: dict[str, int] | None = None

    def message_count(kind: str) -> int | None:
        nonlocal counts
        if counts is None:
            stats = backend.queue_stats(now)
            counts = {READY: 0, SCHEDULED_KIND: 0, RUNNING: 0}
            for q, s in stats.items():
                if queue is None or q == queue:
                    counts[READY] += s.ready
                    counts[SCHEDULED_KIND] += s.scheduled
                    counts[RUNNING] += s.running
        return counts[kind]

    def messages(kind: str) -> tuple[_Fetch, _Count, _Keep]:
        return ((lambda n, o: [_message_row(app, m, now)
                               for m in backend.list_messages(kind, queue, now, n, o)]),
                lambda: message_count(kind), None)

    def dead() -> tuple[_Fetch, _Count, _Keep]:
        keep = None if queue is None else (lambda r: r.queue == queue)
        return ((lambda n, o: [_dead_row(app, d) for d in backend.dead_letters(n, o)]),
                backend.count_dead, keep)

    def results(state: str | None) -> tuple[_Fetch, _Count, _Keep]:
        return ((lambda n, o: [_result_row(app, r)
                               for r in backend.list_results(state, now, n, o)]),
                lambda: None, None)

    sources: list[tuple[_Fetch, _Count, _Keep]]
    if source is None:  # everything: running, ready, scheduled, dead, then finished
        sources = [messages(RUNNING), messages(READY), messages(SCHEDULED_KIND), dead()]
        if queue is None:
            sources.append(results(None))
    elif source == FAILURE and queue is not None:  # only dead letters know their queue
        sources = [dead()]
    elif source in (READY, SCHEDULED_KIND, RUNNING):
        sources = [messages(source)]
    elif source == "dead":
        sources = [dead()]
    elif source == FAILURE:  # dead letters failed too (their results are not listed twice)
        sources = [dead(), results(source)]
    else:
        sources = [results(source)]
    if name is not None:
        sources = [(f, c, _and_name(k, name)) for f, c, k in sources]
    return _page(sources, limit, offset)


def _and_name(keep: _Keep, name: str) -> _Keep:
    if keep is None:
        return lambda r: r.task == name
    first = keep
    return lambda r: first(r) and r.task == name


def _page(sources: list[tuple[_Fetch, _Count, _Keep]], limit: int,
          offset: int) -> list[TaskRow]:
    """Rows `offset` to `offset + limit` of the sources one after the other. Unfiltered
    sources are skipped by their count; filtered ones are read and decoded, SCAN_MAX records
    at most in all."""
    out: list[TaskRow] = []
    skip = offset
    budget = SCAN_MAX
    for fetch, count, keep in sources:
        if len(out) >= limit:
            break
        if keep is None:
            if skip:
                n = count()
                if n is not None and n <= skip:
                    skip -= n
                    continue
            out += fetch(limit - len(out), skip)
            skip = 0
            continue
        pos = 0
        while len(out) < limit and budget > 0:
            want = min(SCAN_PAGE, budget)
            page = fetch(want, pos)
            pos += len(page)
            budget -= len(page)
            for row in page:
                if not keep(row):
                    continue
                if skip:
                    skip -= 1
                elif len(out) < limit:
                    out.append(row)
            if len(page) < want:
                break
    return out


# --- decoding -------------------------------------------------------------------------------
def _decode_body(app: Conveyor, body: bytes) -> tuple[Envelope | None, str | None]:
    try:
        return Envelope.from_dict(app.codec.decode(body)), None
    except SerializationError as exc:
        return None, str(exc)


def _message_row(app: Conveyor, m: MessageRecord, now: float) -> TaskRow:
    env, error = _decode_body(app, m.body)
    state = derived_state(m.ready_at, m.delivery_count, m.lease_until is not None, now)
    return TaskRow(m.id, UNKNOWN_TASK if env is None else env.task, state, m.queue,
                   m.delivery_count, m.priority, [] if env is None else env.args,
                   {} if env is None else env.kwargs, _enqueued(m.enqueued_at, env),
                   m.ready_at, None, m.worker, None, error)


def _dead_row(app: Conveyor, d: DeadLetter) -> TaskRow:
    env, error = _decode_body(app, d.body)
    return TaskRow(d.id, UNKNOWN_TASK if env is None else env.task, FAILURE, d.queue,
                   d.delivery_count, None if env is None else env.priority,
                   [] if env is None else env.args, {} if env is None else env.kwargs,
                   _enqueued(None, env), None, d.died_at, None, d.reason, error)


def _result_row(app: Conveyor, r: ResultRecord) -> TaskRow:
    return TaskRow(r.id, _result_task(app, r), r.state, finished_at=r.finished_at)


def _result_task(app: Conveyor, r: ResultRecord) -> str:
    """The task name a stored result carries (results stored before it did show "?")."""
    try:
        payload = app.codec.decode(r.data) if r.data is not None else None
    except SerializationError:
        return UNKNOWN_TASK
    task = payload.get("task") if isinstance(payload, dict) else None
    return task if isinstance(task, str) and task else UNKNOWN_TASK


def _decode_result(app: Conveyor, r: ResultRecord) -> Any:
    """The value, or a TaskFailed for a failure or revocation (never raises)."""
    return app.decode_outcome(StoredResult(r.id, r.state, r.data, r.finished_at), None,
                              propagate=False)


def _enqueued(stored: float | None, env: Envelope | None) -> float | None:
    """When the task was enqueued: as the backend stored it, else as the producer wrote it."""
    if stored is not None:
        return stored
    if env is not None and env.created_at:
        return env.created_at
    return None


def task_detail(app: Conveyor, now: float, id: str) -> TaskDetail | None:
    """See `Inspector.task_detail`."""
    from .control import decode_progress

    backend = app.backend
    record = backend.task_record(id, now)
    if record is None:
        return None
    stored = backend.get_results([id], now).get(id)
    m, dead, res = record.message, record.dead, record.result
    body = m.body if m is not None else dead.body if dead is not None else None
    env, decode_error = _decode_body(app, body) if body is not None else (None, None)
    if res is not None:
        state = res.state
    elif stored is not None:
        state = stored.state
    elif dead is not None:
        state = FAILURE
    elif m is not None:
        state = derived_state(m.ready_at, m.delivery_count, m.lease_until is not None, now)
    else:  # pragma: no cover - a record has a message or a result
        return None
    value: Any = None
    error: TaskError | None = None
    task = UNKNOWN_TASK if env is None else env.task
    if res is not None:
        outcome = _decode_result(app, res)
        if isinstance(outcome, TaskFailed):
            error = TaskError(outcome.exc_type, outcome.exc_message, outcome.traceback)
            if env is None and outcome.task_name:
                task = outcome.task_name
        else:
            value = outcome
            if env is None:
                task = _result_task(app, res)
    elif dead is not None:
        error = TaskError("DeadLetter", dead.reason)
    progress = decode_progress(app, stored)
    queue = m.queue if m is not None else dead.queue if dead is not None else None
    attempts = (m.delivery_count if m is not None
                else dead.delivery_count if dead is not None else None)
    finished_at = (res.finished_at if res is not None
                   else dead.died_at if dead is not None else None)
    detail = TaskDetail(
        id=id, task=task, state=state, queue=queue,
        priority=m.priority if m is not None else env.priority if env is not None else None,
        attempts=attempts,
        args=[] if env is None else env.args, kwargs={} if env is None else env.kwargs,
        enqueued_at=_enqueued(None if m is None else m.enqueued_at, env),
        ready_at=None if m is None or dead is not None else m.ready_at,
        finished_at=finished_at,
        lease_until=None if m is None else m.lease_until,
        worker=None if m is None else m.worker,
        expires_at=None if env is None else env.expires_at,
        result_expires_at=None if res is None else res.expires_at,
        value=value, error=error, progress=progress,
        dead_reason=None if dead is None else dead.reason,
        decode_error=decode_error,
        timeline=_timeline(env, m, dead, res, stored),
    )
    return detail


def _timeline(env: Envelope | None, m: MessageRecord | None, dead: DeadLetter | None,
              res: ResultRecord | None, stored: StoredResult | None) -> list[TaskEvent]:
    """The events that what is stored shows, oldest first. A retried task's earlier runs leave
    no trace but its attempt count."""
    events: list[TaskEvent] = []
    enqueued = _enqueued(None if m is None else m.enqueued_at, env)
    if enqueued is not None:
        events.append(TaskEvent(enqueued, "enqueued"))
    if m is not None and dead is None and (enqueued is None or m.ready_at > enqueued):
        label = "due" if m.delivery_count == 0 else f"due again (attempt {m.delivery_count + 1})"
        events.append(TaskEvent(m.ready_at, label))
    if stored is not None and stored.state not in TERMINAL_STATES and stored.data is not None:
        events.append(TaskEvent(stored.updated_at, "progress reported"))
    if m is not None and m.lease_until is not None:
        who = f" by {m.worker}" if m.worker else ""
        events.append(TaskEvent(m.lease_until,
                                f"running (attempt {m.delivery_count}){who}: lease ends"))
    if dead is not None:
        events.append(TaskEvent(dead.died_at, f"dead-lettered: {dead.reason}"))
    if res is not None:
        events.append(TaskEvent(res.finished_at, f"finished: {res.state}"))
        events.append(TaskEvent(res.expires_at, "result expires"))
    events.sort(key=lambda e: e.time)
    return events


__all__ = ["SCAN_MAX", "STATE_FILTERS", "TaskDetail", "TaskError", "TaskEvent", "TaskRow"]
