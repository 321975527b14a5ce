"""The overview: totals, the last hour as charts, queue depths and workers' heartbeats."""

from __future__ import annotations

from collections.abc import Sequence

from ...inspect import Status
from ...stats import ActivityBucket
from . import charts
from .html import ago, esc, query, table

STALE = 30.0  # seconds without a heartbeat after which a worker is shown as late


def render(base: str, st: Status, minutes: Sequence[ActivityBucket] | None,
           activity_note: str | None = None) -> str:
    """The live region of `/` (the whole page refreshes: everything on it moves)."""
    ready = sum(q.ready for q in st.queues)
    scheduled = sum(q.scheduled for q in st.queues)
    running = sum(q.running for q in st.queues)
    hour = minutes or []
    ok = sum(m.succeeded for m in hour)
    failed = sum(m.failed + m.dead for m in hour)
    b = esc(base)
    cards = [("ready", ready, False, f"{b}/tasks?state=ready"),
             ("scheduled", scheduled, False, f"{b}/tasks?state=scheduled"),
             ("running", running, False, f"{b}/tasks?state=running"),
             ("workers", len(st.workers), not st.workers, None),
             ("dead letters", st.dead, st.dead > 0, f"{b}/dead")]
    if minutes is not None:
        cards += [("succeeded, last hour", ok, False, None),
                  ("failed, last hour", failed, failed > 0, f"{b}/tasks?state=failure")]
    out = ["<div class='cards'>"]
    for label, value, bad, href in cards:
        inner = f"<b>{value}</b><span>{esc(label)}</span>"
        if href is not None:
            inner = f"<a href='{href}'>{inner}</a>"
        out.append(f"<div class='card{' bad' if bad else ''}'>{inner}</div>")
    out.append("</div>")
    out.append(_charts(minutes, activity_note))
    out.append(_queues(base, st))
    out.append(_workers(st))
    return "".join(out)


def _charts(minutes: Sequence[ActivityBucket] | None, note: str | None) -> str:
    if minutes is None:
        return ("<div class='charts'><div class='chart'><h2>Last hour</h2>"
                f"<p class='muted'>{esc(note or 'activity is not available')}</p></div></div>")
    return (
        "<div class='charts'>"
        "<div class='chart'><h2>Throughput, last hour (tasks per minute)</h2>"
        f"{charts.throughput(minutes)}"
        f"{charts.legend('succeeded', 'retried', 'failed', 'dead')}</div>"
        "<div class='chart'><h2>Failure rate, last hour</h2>"
        f"{charts.failure_rate(minutes)}"
        "<div class='legend'>(failed + dead) / settled, per minute</div></div>"
        "</div>")


def _queues(base: str, st: Status) -> str:
    top = max((q.ready + q.scheduled + q.running for q in st.queues), default=0) or 1

    def bar(value: int, cls: str) -> str:
        width = 0 if value == 0 else max(2.0, 160.0 * value / top)
        return f"<span class='bar {cls}' style='width:{width:.0f}px'></span>"

    rows = [(f"<a href='{esc(base)}/tasks{esc(query(queue=q.name))}'>{esc(q.name)}</a>",
             str(q.ready), str(q.scheduled), str(q.running),
             bar(q.ready, "rdy") + bar(q.scheduled, "sch") + bar(q.running, "run"))
            for q in st.queues]
    return (f"<h2>Queues ({len(st.queues)})</h2>"
            + table(["queue", "ready", "scheduled", "running", ""], rows, {1, 2, 3},
                    empty="no queues yet"))


def _workers(st: Status) -> str:
    rows = []
    for w in sorted(st.workers, key=lambda w: w.id):
        late = w.age > STALE
        beat = f"{esc(ago(w.age))} ago"
        if late:
            beat = f"<span class='badge s-failure' title='no heartbeat lately'>{beat}</span>"
        rows.append((f"<span class='mono'>{esc(w.id)}</span>", esc(w.node),
                     "-" if w.pid is None else str(w.pid), esc(w.pool),
                     "-" if w.concurrency is None else str(w.concurrency),
                     "all" if w.queues is None else esc(", ".join(w.queues)), beat))
    return (f"<h2>Workers ({len(st.workers)})</h2>"
            + table(["id", "node", "pid", "pool", "concurrency", "queues", "heartbeat"],
                    rows, {2, 4}, empty="no live workers"))

