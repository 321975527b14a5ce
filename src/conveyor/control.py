"""Progress reports and revocation, the producer's side (docs/control.md): reading progress,
waiting with an `on_progress` callback, and asking the backend to revoke."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .backends.base import PROGRESS, TERMINAL_STATES, StoredResult
from .errors import SerializationError

if TYPE_CHECKING:
    from .app import Conveyor

# A get(on_progress=...) re-reads this often while waiting: at once after a change, then ever
# less often (a finished task ends the wait at once, as without a callback).
PROGRESS_POLL_FIRST = 0.05
PROGRESS_POLL_MAX = 0.5
REVOKED_MESSAGE = "revoked before it started"


def decode_progress(app: Conveyor, stored: StoredResult | None) -> dict[str, Any] | None:
    """The progress dict a PROGRESS state carries (None for any other state)."""
    if stored is None or stored.state != PROGRESS or stored.data is None:
        return None
    try:
        value = app.codec.decode(stored.data)
    except SerializationError:
        return None
    return value if isinstance(value, dict) else None


def wait_with_progress(app: Conveyor, task_id: str, timeout: float | None,
                       on_progress: Callable[[dict[str, Any]], Any]) -> StoredResult | None:
    """Wait like `Backend.wait`, calling `on_progress` with each new progress report seen
    (each once; reports stored between two reads are seen as the latest only). Returns what
    is known when the task finished or `timeout` passed."""
    deadline = None if timeout is None else time.monotonic() + timeout
    seen: tuple[float, bytes] | None = None
    step = PROGRESS_POLL_FIRST
    while True:
        pause = step if deadline is None else max(0.0, min(step, deadline - time.monotonic()))
        found = app.backend.wait([task_id], pause, app.clock.now).get(task_id)
        changed = False
        if found is not None and found.state == PROGRESS and found.data is not None:
            key = (found.updated_at, found.data)
            if key != seen:
                seen, changed = key, True
                report = decode_progress(app, found)
                if report is not None:
                    on_progress(report)
        if found is not None and found.state in TERMINAL_STATES:
            return found
        if deadline is not None and time.monotonic() >= deadline:
            return found
        step = PROGRESS_POLL_FIRST if changed else min(step * 1.5, PROGRESS_POLL_MAX)


def revoke(app: Conveyor, ids: Sequence[str], terminate: bool,
           task_name: str | None = None) -> list[bool]:
    """Revoke tasks by id in one backend call (see `Result.revoke`)."""
    if not ids:
        return []
    task = app.tasks.get(task_name or "")
    ttl = task.options.result_ttl if task is not None else None
    data = app.encode_failure("TaskRevoked", REVOKED_MESSAGE)
    return app.backend.revoke(list(ids), app.clock.now(), terminate, data,
                              app.result_ttl if ttl is None else ttl)
