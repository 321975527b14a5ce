"""The overview page at `/`: server-rendered HTML, every value escaped, no JavaScript."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from html import escape
from urllib.parse import quote

from ..inspect import DeadTask, Status

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border-bottom:1px solid #ddd;padding:.3em .8em;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}.muted{color:#777}
"""


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], numeric: set[int]) -> str:
    """`rows` hold HTML already escaped."""
    out = ["<table><tr>", *(f"<th>{escape(h)}</th>" for h in head), "</tr>"]
    for row in rows:
        cells = (f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>"
                 for i, c in enumerate(row))
        out += ["<tr>", *cells, "</tr>"]
    out.append("</table>")
    return "".join(out)


def _when(ts: float) -> str:
    return escape(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)))


def overview(url: str, st: Status, dead: Sequence[DeadTask]) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>conveyor</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>conveyor</h1>",
        f"<p class='muted'>backend: {escape(url)}</p>",
        "<h2>Queues</h2>",
        _table(["queue", "ready", "scheduled", "running"],
               [(escape(q.name), str(q.ready), str(q.scheduled), str(q.running))
                for q in st.queues], {1, 2, 3}),
        f"<h2>Workers ({len(st.workers)})</h2>",
    ]
    if st.workers:
        parts.append(_table(
            ["id", "node", "pid", "pool", "concurrency", "queues", "heartbeat"],
            [(escape(w.id), escape(w.node), "-" if w.pid is None else str(w.pid),
              escape(w.pool), "-" if w.concurrency is None else str(w.concurrency),
              "*" if w.queues is None else escape(", ".join(w.queues)),
              f"{w.age:.0f}s ago") for w in st.workers], {2, 4}))
    else:
        parts.append("<p class='muted'>no live workers</p>")
    parts.append(f"<h2>Dead letters ({st.dead})</h2>")
    if dead:
        parts.append(_table(
            ["id", "task", "queue", "reason", "died", "attempts"],
            [(f"<a href='api/tasks/{escape(quote(d.id, safe=''))}'>{escape(d.id)}</a>",
              escape(d.task), escape(d.queue), escape(d.reason), _when(d.died_at),
              str(d.attempts)) for d in dead], {5}))
        if st.dead > len(dead):
            parts.append(f"<p class='muted'>showing the oldest {len(dead)}; all of them "
                         "at <a href='api/dead'>api/dead</a></p>")
    else:
        parts.append("<p class='muted'>none</p>")
    if st.periodic:
        parts.append(f"<h2>Periodic tasks ({len(st.periodic)})</h2>")
        parts.append("<p class='muted'>see <code>conveyor periodic APP</code></p>")
    parts.append("<p class='muted'>API: <a href='api/openapi.json'>api/openapi.json</a> · "
                 "<a href='metrics'>metrics</a></p></body></html>")
    return "".join(parts)
