"""Periodic tasks: schedule, last run and its state, next run."""

from __future__ import annotations

import time
from collections.abc import Sequence

from ...periodic import PeriodicInfo
from .html import ago, esc, query, state_badge, table, when


def render(base: str, rows: Sequence[PeriodicInfo], now: float | None = None) -> str:
    now = time.time() if now is None else now
    out = []
    for p in rows:
        if p.last_tick is None:
            last = "<span class='muted'>not run yet</span>"
        else:
            last = f"{when(p.last_tick)} <span class='muted'>({esc(ago(now - p.last_tick))} ago)</span>"
            if p.last_state:
                last += " " + state_badge(p.last_state)
        if p.next_run is None:
            nxt = "<span class='muted'>never</span>"
        else:
            nxt = f"{when(p.next_run)} <span class='muted'>(in {esc(ago(p.next_run - now))})</span>"
        if p.waiting is not None:
            nxt += (" <span class='badge s-retry' title='due, no worker has started it'>"
                    f"waiting since {when(p.waiting)}</span>")
        flags = ", ".join(f for f, on in (("catch-up", p.catch_up), ("overlap", p.overlap)) if on)
        out.append((f"<a href='{esc(base)}/tasks{esc(query(name=p.name))}'>{esc(p.name)}</a>",
                    f"<code>{esc(p.schedule)}</code>", esc(p.queue), last, nxt,
                    esc(flags or "-")))
    return table(["task", "schedule", "queue", "last run", "next run", "options"], out,
                 empty="no periodic tasks: see @app.periodic")

