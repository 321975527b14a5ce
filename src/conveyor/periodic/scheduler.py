"""The scheduler every worker runs (in its supervisor, from the heartbeat): it keeps the next
two ticks of each periodic task written in the backend, ahead of time.

How each tick happens exactly once, on any number of workers, with no leader:

- Every scheduler computes the same ticks (same schedule, same clock within skew) and writes
  them *ahead of time*: messages ready at their tick time, whose id and dedup key are both
  `<task>@<tick time>`. The backend's atomic enqueue writes each once; the other schedulers'
  enqueues find the key held and write nothing. The key is held while the message waits or
  runs and, after it ran, until an hour past the following tick, so no late scheduler can
  write it again.
- Two ticks are kept ahead, not one, so that at every moment a tick still to come is written:
  when tick t comes due and every worker stops before its scheduler's next heartbeat, t+1 is
  already there. Ticks are therefore durable before they are due. If every worker stops, they
  wait in the backend, and the first worker back runs them as *one* run: a tick that starts
  when a later tick is due too and already written is skipped as superseded (see
  `PeriodicEntry.superseded`), so only the latest runs (`catch_up`), or they are dropped as
  expired (`catch_up=False`: each carries `expires` a little after its time). On the very
  first deploy nothing waits, so nothing counts as missed.
- Between ticks the scheduler makes no backend call: `beat()` compares the clock with the next
  due time it computed and returns.
- A backend outage is logged once (`Outage`) and retried with backoff. A scheduler that comes
  back (from an outage or a stalled heartbeat) past ticks it never saw written looks once at
  the furthest tick it wrote: still waiting, or run late (after the others came due), it is the
  one run for them; run on time (the workers went on while the scheduler could not write), the
  scheduler writes the latest missed tick, unless `catch_up=False` and it is already late.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from ..backends.base import TERMINAL_STATES, Message
from ..worker.outage import Outage
from .entry import PeriodicEntry

if TYPE_CHECKING:
    from ..app import Conveyor

log = logging.getLogger("conveyor.periodic")


@dataclass
class _State:
    entry: PeriodicEntry
    written: float | None = None  # the furthest tick this scheduler saw written (or found)
    due: float = 0.0  # when to look again: when the nearer of the two written ticks comes due


class Scheduler:
    """Keeps each periodic task's next ticks written. Call `beat()` often (the worker's
    heartbeat does, about twice a second); it is cheap while nothing is due."""

    def __init__(self, app: Conveyor, entries: Iterable[PeriodicEntry] | None = None) -> None:
        self.app = app
        chosen = app.periodic_tasks.values() if entries is None else entries
        self._states = [_State(e) for e in chosen]
        self._due = 0.0 if self._states else math.inf
        self.outage = Outage("periodic scheduler", log)

    @property
    def next_due(self) -> float:
        """When `beat()` will next call the backend (epoch seconds on the app's clock)."""
        return self._due

    def beat(self) -> None:
        """Write whatever became due. Never raises: an outage is logged and retried."""
        now = self.app.clock.now()
        if now < self._due:
            return
        try:
            self._run(now)
        except Exception as exc:
            self._due = now + self.outage.failed(exc)
        else:
            self.outage.ok()

    def _run(self, now: float) -> None:
        messages: list[Message] = []
        planned: list[tuple[_State, float, float]] = []
        for st in self._states:
            if now < st.due:
                continue
            entry, schedule = st.entry, st.entry.schedule
            if (st.written is not None and math.isfinite(st.written)
                    and schedule.next_after(st.written) <= now):
                # Ticks came due that this scheduler never saw written (it could not reach
                # the backend, or its heartbeat stalled). If the furthest tick it did write
                # still waits, or ran after the latest of them came due, that run covers
                # them; else write the latest missed tick, once.
                latest = schedule.ticks_until(now, 1)
                if (latest and latest[0] > st.written and entry.on_time(latest[0], now)
                        and not self._covered(entry, st.written, latest[0], now)):
                    messages.append(entry.message(self.app, latest[0], now))
            upcoming = schedule.next_after(now)
            following = schedule.next_after(upcoming)
            messages += [entry.message(self.app, t, now) for t in (upcoming, following)
                         if math.isfinite(t)]
            planned.append((st, upcoming, following))
        if messages:
            self.app.backend.enqueue(messages, now)
        for st, upcoming, following in planned:
            if st.written is None:
                log.info("periodic %s (%s): next run %s", st.entry.name,
                         st.entry.schedule.describe(), _when(upcoming))
            else:
                log.debug("periodic %s: next run %s", st.entry.name, _when(upcoming))
            st.written, st.due = following, upcoming
        self._due = min(st.due for st in self._states)

    def _covered(self, entry: PeriodicEntry, tick: float, latest: float, now: float) -> bool:
        """Whether the run of `tick` stands for the ticks missed up to `latest`: it has not
        finished yet, or finished after `latest` came due (one read, on this rare path)."""
        tid = entry.tick_id(tick)
        found = self.app.backend.get_results([tid], now).get(tid)
        if found is None:  # gone (or results not stored): assume it ran on time
            return False
        return found.state not in TERMINAL_STATES or found.updated_at >= latest


def _when(t: float) -> str:
    if not math.isfinite(t):
        return "never"
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")
