"""The Backend interface: the few atomic primitives a worker and a producer need.

Every backend (memory, SQLite, Redis, PostgreSQL) implements exactly this and passes the one
conformance suite in `conveyor.testing.conformance`. Time is always passed in (`now`), so the
suite drives it with a FakeClock. Settle calls are fenced by the lease token: a worker whose
lease was taken over gets `False` back and changes nothing.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import ConfigError

# Task states, as API.md names them.
PENDING = "PENDING"
SCHEDULED = "SCHEDULED"
STARTED = "STARTED"
PROGRESS = "PROGRESS"
RETRY = "RETRY"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
REVOKED = "REVOKED"
TERMINAL_STATES = frozenset({SUCCESS, FAILURE, REVOKED})


def derived_state(ready_at: float, delivery_count: int, leased: bool, now: float) -> str:
    """The state of a message that is still in the queue (shared by every backend)."""
    if leased:
        return STARTED
    if delivery_count > 0:
        return RETRY
    if ready_at > now:
        return SCHEDULED
    return PENDING


def redact(url: str) -> str:
    """The URL with any password replaced by ***, for logs and error messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    user = parts.username or ""
    # Everything after the last "@" of the network location is the host (and port), which
    # stays as written even when the port is not a number.
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


@dataclass(frozen=True, slots=True)
class Message:
    """One task to enqueue. `dedup_key`, when set, is held while the message exists and for
    `dedup_retention` seconds after it is settled; enqueueing another message with a held key
    writes nothing and returns the holder's id."""

    id: str
    queue: str
    body: bytes
    priority: int = 0
    ready_at: float = 0.0
    dedup_key: str | None = None
    dedup_retention: float = 0.0


@dataclass(frozen=True, slots=True)
class Delivery:
    """A claimed message. `token` fences every settle call; `delivery_count` counts claims."""

    id: str
    queue: str
    body: bytes
    priority: int
    delivery_count: int
    token: str
    lease_until: float


@dataclass(frozen=True, slots=True)
class StoredResult:
    """What a producer can read about a task: its state and, once settled, its result bytes.
    While a running task has reported progress the state is PROGRESS and `data` holds the
    progress bytes (and `updated_at` when they were stored)."""

    id: str
    state: str
    data: bytes | None = None
    updated_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Ack:
    """The task is finished: delete the message and store its result (if `data` is given)."""

    id: str
    token: str
    data: bytes | None = None
    state: str = SUCCESS
    result_ttl: float = 86400.0


@dataclass(frozen=True, slots=True)
class Release:
    """Give the message back, to be claimed again at `ready_at`. `attempted=False` means it was
    never started (shutdown), so the claim is not counted."""

    id: str
    token: str
    ready_at: float
    body: bytes | None = None
    attempted: bool = True


@dataclass(frozen=True, slots=True)
class Bury:
    """Move the message to the dead letters with a reason a person can act on, and store its
    FAILURE result (if `data` is given)."""

    id: str
    token: str
    reason: str
    data: bytes | None = None
    result_ttl: float = 86400.0


Settlement = Ack | Release | Bury


@dataclass(frozen=True, slots=True)
class QueueStats:
    ready: int = 0
    scheduled: int = 0
    running: int = 0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: str
    queue: str
    body: bytes
    reason: str
    died_at: float
    delivery_count: int


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    id: str
    info: dict[str, Any] = field(default_factory=dict)
    last_seen: float = 0.0


# Kinds of waiting or running message `Backend.list_messages` lists (as `queue_stats` counts
# them: an expired lease is ready again, a due scheduled message is ready).
READY = "ready"
SCHEDULED_KIND = "scheduled"
RUNNING = "running"
MESSAGE_KINDS = (READY, SCHEDULED_KIND, RUNNING)


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """A stored message as the Inspector reads it (never used to settle anything).
    `enqueued_at` and `worker` are None where the backend does not store them (Redis);
    `lease_until` and `worker` are set only while a live lease holds the message."""

    id: str
    queue: str
    body: bytes
    priority: int
    ready_at: float
    delivery_count: int
    enqueued_at: float | None = None
    lease_until: float | None = None
    worker: str | None = None


@dataclass(frozen=True, slots=True)
class ResultRecord:
    """A stored result that `get_results` would report: state, data, when it was stored
    (`finished_at`) and when it expires."""

    id: str
    state: str
    data: bytes | None
    finished_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """Everything stored about one id: its message (while waiting, running or dead), its dead
    letter (when dead) and its result (when finished and not expired)."""

    id: str
    message: MessageRecord | None = None
    dead: DeadLetter | None = None
    result: ResultRecord | None = None


def check_kind(kind: str) -> str:
    """`kind` if `list_messages` knows it; ValueError naming the known ones otherwise."""
    if kind not in MESSAGE_KINDS:
        raise ValueError(f"unknown message kind {kind!r} (known: {', '.join(MESSAGE_KINDS)})")
    return kind


def result_states(state: str | None) -> tuple[str, ...]:
    """The result states `list_results(state)` lists; ValueError for any other state."""
    if state is None:
        return (SUCCESS, FAILURE, REVOKED)
    if state not in TERMINAL_STATES:
        raise ValueError(f"results are SUCCESS, FAILURE or REVOKED, not {state!r}")
    return (state,)


class Backend(abc.ABC):
    """Abstract backend. Subclasses implement the primitives; `wait` and `wait_for_work` have
    polling defaults that a backend with server-side notifications overrides."""

    url: str = ""
    #: True for a backend behind a network server (Redis, PostgreSQL): a worker that starts
    #: while the server is down waits for it instead of exiting.
    has_server: bool = False
    #: The longest an idle worker sleeps in `wait_for_work` between claims. Short where
    #: wake-ups are best effort (SQLite's local sockets); long where the server wakes idle
    #: workers and `wait_for_work` itself returns when a scheduled task or an expired lease
    #: comes due, so an idle worker does not poll the server.
    idle_wait_max: float = 0.1

    # --- producer -------------------------------------------------------------------------
    @abc.abstractmethod
    def enqueue(self, messages: Sequence[Message], now: float) -> list[str]:
        """Write messages atomically each. Returns, per message, the id that holds its dedup
        key: the message's own id when written, the existing holder's id when not."""

    def enqueue_in(self, connection: Any, messages: Sequence[Message], now: float) -> list[str]:
        """Like `enqueue`, but inside the caller's open transaction on `connection` (a
        connection to this backend's own database): the messages exist only if that
        transaction commits. Only a backend that shares its database with the application
        (PostgreSQL) can do this."""
        raise ConfigError(f"{redact(self.url)} cannot enqueue inside your database transaction; "
                          "transactional enqueue needs a postgresql:// backend")

    # --- consumer -------------------------------------------------------------------------
    @abc.abstractmethod
    def claim(self, queues: Sequence[str] | None, worker_id: str, now: float, lease_for: float,
              limit: int) -> list[Delivery]:
        """Take up to `limit` messages that are ready (`ready_at <= now`) or whose lease ran
        out, highest priority first, FIFO within a priority. `queues=None`: every queue."""

    @abc.abstractmethod
    def extend(self, leases: Sequence[tuple[str, str]], now: float,
               lease_for: float) -> set[str]:
        """Heartbeat: push the lease of each (id, token) to now + lease_for. Returns the tokens
        still held."""

    @abc.abstractmethod
    def settle(self, settlements: Sequence[Settlement], now: float) -> list[bool]:
        """Apply acks, releases and burials, each fenced by its token."""

    def settle_and_claim(self, settlements: Sequence[Settlement], queues: Sequence[str] | None,
                         worker_id: str, now: float, lease_for: float, limit: int,
                         ) -> tuple[list[bool], list[Delivery]]:
        """Settle the outcomes of the last batch and claim the next one: the worker's hot path,
        in one round trip (one transaction) where the backend can. This default makes two."""
        done = self.settle(settlements, now) if settlements else []
        return done, self.claim(queues, worker_id, now, lease_for, limit)

    def ack(self, id: str, token: str, data: bytes | None, now: float, *, state: str = SUCCESS,
            result_ttl: float = 86400.0) -> bool:
        return self.settle([Ack(id, token, data, state, result_ttl)], now)[0]

    def release(self, id: str, token: str, ready_at: float, now: float, *,
                body: bytes | None = None, attempted: bool = True) -> bool:
        return self.settle([Release(id, token, ready_at, body, attempted)], now)[0]

    def bury(self, id: str, token: str, reason: str, now: float, *, data: bytes | None = None,
             result_ttl: float = 86400.0) -> bool:
        return self.settle([Bury(id, token, reason, data, result_ttl)], now)[0]

    # --- results --------------------------------------------------------------------------
    @abc.abstractmethod
    def get_results(self, ids: Sequence[str], now: float) -> dict[str, StoredResult]:
        """State (and result bytes once settled) of each known id; unknown ids are absent. A
        message under a live lease whose holder stored progress (`set_progress`, same token)
        reads PROGRESS with the progress bytes."""

    def wait(self, ids: Sequence[str], timeout: float | None, now_fn: Any = time.time,
             ) -> dict[str, StoredResult]:
        """Block until every id is in a terminal state or `timeout` seconds pass; returns what
        is known then. The default polls with a growing interval (1 ms up to 50 ms), which
        keeps a waiting caller near 1% of a core."""
        return self.poll_results(ids, timeout, now_fn, time.sleep, 0.001)

    def poll_results(self, ids: Sequence[str], timeout: float | None, now_fn: Any,
                     pause: Callable[[float], Any], first: float) -> dict[str, StoredResult]:
        """The polling loop of `wait`: read, then `pause(seconds)` for a growing interval
        (from `first` up to 50 ms) until every id is finished or `timeout` passes. A backend
        with notifications passes a `pause` that returns early when woken."""
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = first
        while True:
            found = self.get_results(ids, now_fn())
            if all(i in found and found[i].state in TERMINAL_STATES for i in ids):
                return found
            step = interval
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return found
                step = min(interval, left)
            pause(step)
            interval = min(interval * 1.5, 0.05)

    def wait_for_work(self, queues: Sequence[str] | None, timeout: float) -> None:
        """Sleep until work may be ready or `timeout` passes. The default just sleeps; the
        consumer grows the timeout while idle."""
        if timeout > 0:
            time.sleep(timeout)

    # --- progress and revocation (docs/control.md) ----------------------------------------
    @abc.abstractmethod
    def set_progress(self, id: str, token: str, data: bytes, now: float) -> bool:
        """Store `data` as the latest progress of the running message `id`, fenced by its lease
        token like a settle (False, nothing written, for a zombie or a settled message). While
        that lease is held, `get_results` reports the id as PROGRESS with `data` and
        `updated_at=now`; a later claim (a new token), a release or a settle hides it."""

    @abc.abstractmethod
    def revoke(self, ids: Sequence[str], now: float, terminate: bool, data: bytes,
               result_ttl: float) -> list[bool]:
        """Revoke each id, atomically each. A message that is waiting (ready, scheduled, a
        retry, or a lease that ran out) is deleted like an ack and gets the REVOKED result
        `data` (waiters are woken); a message under a live lease is only marked revoked
        (`terminate` marks it to be stopped; a mark never weakens), for the worker holding it to
        act on (see `revoked`). True for each id revoked or marked; False for an unknown id, a
        settled one, or a dead letter (left alone)."""

    @abc.abstractmethod
    def revoked(self, ids: Sequence[str]) -> dict[str, bool]:
        """The marks of `revoke` on messages that still exist: id -> True when asked to stop
        (terminate), False when only revoked (its current run may finish, but it must not run
        again). Ids without a mark, settled or dead are absent. The mark goes with the message
        (an ack, a burial or a new enqueue of the id after it starts clean)."""

    # --- coordination ---------------------------------------------------------------------
    @abc.abstractmethod
    def try_lock(self, key: str, owner: str, ttl: float, now: float) -> bool:
        """Take (or renew, if `owner` holds it) the lock `key` until now + ttl."""

    @abc.abstractmethod
    def unlock(self, key: str, owner: str) -> bool:
        """Release `key` if `owner` holds it."""

    @abc.abstractmethod
    def incr(self, key: str, by: int, ttl: float, now: float) -> int:
        """Add `by` to counter `key` (created at 0 with expiry now + ttl) and return it."""

    def incr_many(self, increments: Sequence[tuple[str, int, float]], now: float) -> None:
        """`incr(key, by, ttl, now)` for each (key, by, ttl), all or none: the workers' task
        counters send a second's worth in one call. This default makes one `incr` per key
        (not atomic); every built-in backend overrides it with one transaction or script."""
        for key, by, ttl in increments:
            self.incr(key, by, ttl, now)

    def read_counters(self, keys: Sequence[str], now: float) -> dict[str, int]:
        """The value of each counter among `keys` that exists and has not expired (the others
        are left out, and nothing is created): the dashboard reads many in one call. This
        default makes one `incr(key, 0, ...)` per key, which writes (and leaves out counters at
        0 too); every built-in backend overrides it with one read."""
        found = {k: self.incr(k, 0, 0.0, now) for k in dict.fromkeys(keys)}
        return {k: v for k, v in found.items() if v}

    # --- administration (Inspector, CLI, worker registry) ---------------------------------
    @abc.abstractmethod
    def queue_stats(self, now: float) -> dict[str, QueueStats]: ...

    @abc.abstractmethod
    def dead_letters(self, limit: int = 100, offset: int = 0) -> list[DeadLetter]: ...

    def count_dead(self) -> int:
        """How many dead letters there are. This default pages through them; backends
        override it with a cheap count."""
        total, page = 0, 500
        while True:
            got = len(self.dead_letters(page, total))
            total += got
            if got < page:
                return total

    @abc.abstractmethod
    def retry_dead(self, ids: Sequence[str] | None, now: float) -> list[str]:
        """Put dead letters back in their queue (all when `ids` is None); their stored FAILURE
        result is removed. Returns the ids requeued."""

    @abc.abstractmethod
    def purge_dead(self, ids: Sequence[str] | None = None) -> int: ...

    @abc.abstractmethod
    def list_messages(self, kind: str, queue: str | None, now: float, limit: int = 100,
                      offset: int = 0) -> list[MessageRecord]:
        """Messages of one kind (`READY`, `SCHEDULED_KIND`, `RUNNING`; ValueError otherwise),
        of `queue` or of every queue, in a stable order: ready in claim order (priority
        descending, then FIFO), scheduled by `ready_at`, running by `lease_until` (ties in
        FIFO order). Dead letters are listed by `dead_letters`. Read-only."""

    @abc.abstractmethod
    def list_results(self, state: str | None, now: float, limit: int = 100,
                     offset: int = 0) -> list[ResultRecord]:
        """Unexpired stored results in `state` (SUCCESS, FAILURE or REVOKED; None: all three)
        of tasks whose message is gone (a dead letter's FAILURE is not listed here: it is in
        `dead_letters`; a result hidden by a new message of the same id neither), latest
        `expires_at` first, then id descending: newest first among results kept equally long.
        Results keep no queue. Redis looks at a bounded part of its expiry index per call
        (see its docstring). Read-only."""

    @abc.abstractmethod
    def task_record(self, id: str, now: float) -> TaskRecord | None:
        """Everything stored about `id` (None when nothing is). Read-only."""

    @abc.abstractmethod
    def purge(self, queue: str | None, now: float) -> int:
        """Delete messages waiting in `queue` (all queues when None); running ones stay."""

    @abc.abstractmethod
    def put_worker(self, worker: WorkerInfo, now: float, ttl: float) -> None: ...

    @abc.abstractmethod
    def remove_worker(self, worker_id: str) -> None: ...

    @abc.abstractmethod
    def workers(self, now: float) -> list[WorkerInfo]: ...

    @abc.abstractmethod
    def housekeeping(self, now: float) -> None:
        """Drop expired results, dedup keys, locks and counters."""

    def startup_warnings(self) -> list[str]:
        """Problems a worker should log when it starts (e.g. a Redis that may evict queue
        data). Checked once per worker, never on the producer's hot path."""
        return []

    def checkpoint(self) -> float | None:
        """Background upkeep the worker supervisor runs about twice a second (SQLite: copy the
        write-ahead log back into the database, off the producers' and tasks' hot path).
        Returns how soon (seconds) it wants to run again when that is sooner, else None."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class SettleAndClaimBackend(Backend):
    """A backend whose one primitive for the consumer is `settle_and_claim` (a Lua script, a
    PL/pgSQL function): `claim` and `settle` are that call with nothing to settle, or nothing
    to claim."""

    @abc.abstractmethod
    def settle_and_claim(self, settlements: Sequence[Settlement], queues: Sequence[str] | None,
                         worker_id: str, now: float, lease_for: float, limit: int,
                         ) -> tuple[list[bool], list[Delivery]]: ...

    def claim(self, queues: Sequence[str] | None, worker_id: str, now: float, lease_for: float,
              limit: int) -> list[Delivery]:
        return self.settle_and_claim((), queues, worker_id, now, lease_for, limit)[1]

    def settle(self, settlements: Sequence[Settlement], now: float) -> list[bool]:
        if not settlements:
            return []
        return self.settle_and_claim(settlements, [], "", now, 0.0, 0)[0]
