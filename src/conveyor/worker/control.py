"""Progress reports and revocation, the worker's side (docs/control.md).

- `ctx.progress(...)` writes through `progress.ProgressReport`.
- `revoke(terminate=True)` of a running task is noticed by the pool host (the supervisor, or
  the thread pool's main thread), which asks the backend about the tasks it runs every
  `REVOKE_POLL` seconds, and only while some run (`RevocationWatch`). The supervisor kills the
  child and settles the task REVOKED, fenced by its token; the thread pool sets
  `ctx.cancelled` and the slot records REVOKED when the task returns or raises.
- A retry or a redelivery (delivery count > 1) of a task revoked meanwhile is not run: the slot
  asks the backend before running it (`skip_if_revoked`), a read that first deliveries, the
  hot path, never pay.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..backends.base import REVOKED, Ack, Backend, Delivery
from .executor import Finished, Prepared
from .outage import Outage

if TYPE_CHECKING:
    from ..app import Conveyor
    from ..task import Task

log = logging.getLogger("conveyor.worker")

REVOKE_POLL = 0.5  # seconds between checks for revoke(terminate=True) while tasks run
TERMINATED = "revoked while running: stopped (terminate=True)"
NOT_AGAIN = "revoked while it ran: not run again"


def revoked_outcome(app: Conveyor, d: Delivery, task: Task[Any, Any] | None,
                    message: str) -> Finished:
    """The settlement of a revoked task: its REVOKED result, fenced by the token."""
    ttl = None if task is None else task.options.result_ttl
    data = app.encode_failure("TaskRevoked", message, "", "" if task is None else task.name)
    return Finished(Ack(d.id, d.token, data, REVOKED, app.result_ttl if ttl is None else ttl),
                    "revoked", message, "" if task is None else task.name)


def skip_if_revoked(app: Conveyor, backend: Backend, d: Delivery,
                    prepared: Prepared | Finished) -> Prepared | Finished:
    """A retry or a redelivery of a task revoked since it was last delivered is not run."""
    if d.delivery_count <= 1 or not isinstance(prepared, Prepared):
        return prepared
    try:
        marks = backend.revoked([d.id])
    except Exception as exc:  # cannot tell: run it (at-least-once), as before revoke existed
        log.warning("task %s: could not check for revocation: %s", d.id, exc)
        return prepared
    if d.id in marks:
        return revoked_outcome(app, d, prepared.task, NOT_AGAIN)
    return prepared


class RevocationWatch:
    """Which running tasks were asked to stop: one backend read every REVOKE_POLL seconds,
    none while nothing runs."""

    def __init__(self, backend: Backend, poll: float = REVOKE_POLL) -> None:
        self.backend = backend
        self.poll = poll
        self.next = 0.0
        self.outage = Outage("checking for revoked tasks", log)

    def due(self) -> bool:
        """Time to look again (callers skip gathering what runs until then)."""
        return time.monotonic() >= self.next

    def to_stop(self, running: Sequence[str]) -> set[str]:
        """The ids among `running` asked to stop; asks the backend only when due."""
        if not running or not self.due():
            return set()
        now = time.monotonic()
        self.next = now + self.poll
        try:
            marks = self.backend.revoked(list(running))
        except Exception as exc:
            self.next = now + max(self.poll, self.outage.failed(exc))
            return set()
        self.outage.ok()
        return {i for i, stop in marks.items() if stop}
