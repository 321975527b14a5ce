"""The read side for `conveyor periodic` and `conveyor status`: each periodic task's schedule,
its last run (found by the deterministic ids of its recent ticks) and its next run."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..backends.base import PENDING, SCHEDULED, StoredResult

if TYPE_CHECKING:
    from ..app import Conveyor

LOOKBACK = 20  # recent ticks whose results are looked up to find the last run


@dataclass(frozen=True, slots=True)
class PeriodicInfo:
    name: str
    schedule: str
    queue: str
    catch_up: bool
    overlap: bool
    next_run: float | None  # epoch seconds; None when the schedule never fires again
    last_tick: float | None = None  # the tick time of the last run found
    last_state: str | None = None  # its state: SUCCESS, FAILURE, STARTED, PENDING, ...
    last_updated: float | None = None  # when that state was stored (finished), if known
    waiting: float | None = None  # a tick that came due but no worker has started yet


def periodic_status(app: Conveyor, now: float) -> list[PeriodicInfo]:
    """One row per periodic task, sorted by name, with one `get_results` call for all."""
    entries = [e for _, e in sorted(app.periodic_tasks.items())]
    recent: dict[str, list[tuple[float, str]]] = {}
    for e in entries:
        recent[e.name] = [(t, e.tick_id(t)) for t in e.schedule.ticks_until(now, LOOKBACK)]
    ids = [i for ticks in recent.values() for _, i in ticks]
    found = app.backend.get_results(ids, now) if ids else {}
    out = []
    for e in entries:
        nxt = e.schedule.next_after(now)
        last: tuple[float, StoredResult] | None = None
        waiting = None
        for tick, tid in recent[e.name]:  # newest first
            stored = found.get(tid)
            if stored is None:
                continue
            if stored.state in (PENDING, SCHEDULED):  # due, but not started yet
                waiting = tick
                continue
            last = (tick, stored)
            break
        out.append(PeriodicInfo(
            e.name, e.schedule.describe(), e.task.options.queue, e.catch_up, e.overlap,
            nxt if math.isfinite(nxt) else None,
            None if last is None else last[0], None if last is None else last[1].state,
            None if last is None else (last[1].updated_at or None), waiting))
    return out
