"""The tasks list (filters by state, queue and name, a search by id) and one task's detail
(arguments, result or error with its traceback, attempts, timeline, progress, revoke)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from ...inspect import TaskDetail, TaskRow
from .html import (
    ago,
    as_json,
    csrf_field,
    esc,
    path_part,
    query,
    state_badge,
    table,
    when,
)

FILTER_STATES = ("ready", "scheduled", "running", "success", "failure", "revoked", "dead")
FINISHED = ("SUCCESS", "FAILURE", "REVOKED")


def filters(base: str, state: str, queue: str, name: str, queues: Sequence[str],
            names: Sequence[str]) -> str:
    """A plain GET form, outside the live region so a refresh never eats what is typed."""
    opts = ["<option value=''>any</option>"] + [
        f"<option{' selected' if s == state.lower() else ''}>{esc(s)}</option>"
        for s in FILTER_STATES]
    qopts = ["<option value=''>any</option>"] + [
        f"<option{' selected' if q == queue else ''}>{esc(q)}</option>" for q in queues]
    b = esc(base)
    return (
        f"<form class='filters' method='get' action='{b}/tasks'>"
        f"<label>state<select name='state'>{''.join(opts)}</select></label>"
        f"<label>queue<select name='queue'>{''.join(qopts)}</select></label>"
        f"<label>task name<input name='name' value='{esc(name)}' list='task-names' "
        "placeholder='e.g. shop.resize'></label>"
        "<datalist id='task-names'>"
        + "".join(f"<option value='{esc(n)}'>" for n in names) +
        "</datalist><button>Filter</button>"
        f"<a href='{b}/tasks'>clear</a></form>"
        f"<form class='filters' method='get' action='{b}/tasks'>"
        "<label>task id<input name='id' size='38' placeholder='paste an id' required>"
        "</label><button class='secondary'>Open</button></form>"
        + (_NOTE if queue or name else ""))


_NOTE = ("<p class='muted'>Finished tasks keep only their result: a queue filter leaves them "
         "out, and a name filter never matches a SUCCESS.</p>")


def _call(task: str, args: list[object], kwargs: dict[str, object]) -> str:
    parts = [json.dumps(a, ensure_ascii=False, default=repr) for a in args]
    parts += [f"{k}={json.dumps(v, ensure_ascii=False, default=repr)}"
              for k, v in kwargs.items()]
    text = ", ".join(parts)
    if len(text) > 70:
        text = text[:67] + "..."
    return f"<span class='mono'>{esc(task)}({esc(text)})</span>"


def listing(base: str, rows: Sequence[TaskRow], limit: int, offset: int,
            params: dict[str, str], error: str | None, now: float) -> str:
    if error:
        return f"<p class='notice error'>{esc(error)}</p>"
    out = []
    for r in rows:
        link = f"<a class='mono' href='{esc(base)}/tasks/{esc(path_part(r.id))}'>{esc(r.id)}</a>"
        state = state_badge(r.state)
        if r.dead_reason:
            state += f" <span class='muted'>dead: {esc(r.dead_reason)}</span>"
        if r.decode_error:
            call = f"<span class='muted' title='{esc(r.decode_error)}'>cannot decode</span>"
        elif r.state in FINISHED and r.queue is None:
            call = f"<span class='mono'>{esc(r.task)}</span>"
        else:
            call = _call(r.task, r.args, r.kwargs)
        at = r.finished_at or r.enqueued_at
        seen = "-" if at is None else f"{when(at)} <span class='muted'>({esc(_rel(at, now))})</span>"
        out.append((link, call, state, esc(r.queue or "-"),
                    "-" if r.attempts is None else str(r.attempts), seen))
    html = [table(["id", "task", "state", "queue", "attempts", "enqueued / finished"], out,
                  {4}, empty="no tasks match")]
    links = []
    if offset > 0:
        links.append(f"<a href='{esc(base)}/tasks"
                     f"{esc(query(**params, offset=max(0, offset - limit) or None))}'>"
                     "&larr; previous</a>")
    if len(rows) >= limit:
        links.append(f"<a href='{esc(base)}/tasks{esc(query(**params, offset=offset + limit))}'>"
                     "next &rarr;</a>")
    if links:
        html.append(f"<div class='pager'>{''.join(links)}<span class='muted'>from "
                    f"{offset + 1}</span></div>")
    return "".join(html)


def detail(base: str, d: TaskDetail, csrf: str, now: float) -> str:
    kv = [("state", state_badge(d.state)), ("task", f"<span class='mono'>{esc(d.task)}</span>"),
          ("queue", esc(d.queue or "-")),
          ("priority", "-" if d.priority is None else str(d.priority)),
          ("attempts", "-" if d.attempts is None else str(d.attempts)),
          ("worker", esc(d.worker or "-"))]
    for label, ts in (("enqueued", d.enqueued_at), ("due", d.ready_at),
                      ("started", d.started_at), ("finished", d.finished_at),
                      ("expires", d.expires_at), ("result kept until", d.result_expires_at)):
        if ts is not None:
            kv.append((label, when(ts)))
    if d.dead_reason:
        kv.append(("dead letter", esc(d.dead_reason)))
    out = ["<dl class='kv'>", *(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in kv), "</dl>"]
    if d.dead_reason:
        out.append(_dead_actions(base, d.id, csrf))
    if d.state not in FINISHED and d.decode_error is None:
        out.append(_revoke(base, d.id, csrf, d.state in ("STARTED", "PROGRESS")))
    if d.progress is not None:
        out.append("<h2>Progress</h2>" + _progress(d.progress))
    if d.decode_error:
        out.append(f"<p class='notice error'>The message cannot be decoded: "
                   f"{esc(d.decode_error)}</p>")
    else:
        out.append("<h2>Arguments</h2>")
        out.append(as_json({"args": d.args, "kwargs": d.kwargs}))
    if d.error is not None:
        out.append("<h2>Error</h2>")
        out.append(f"<p><b class='mono'>{esc(d.error.exc_type)}</b>: {esc(d.error.message)}</p>")
        if d.error.traceback:
            out.append(f"<pre class='code tb' id='traceback'>{esc(d.error.traceback)}</pre>")
    elif d.state == "SUCCESS":
        out.append("<h2>Result</h2>" + as_json(d.value))
    out.append("<h2>Timeline</h2>")
    out.append(table(["time", "", "event"],
                     [(when(e.time), f"<span class='muted'>{esc(_rel(e.time, now))}</span>",
                       esc(e.event)) for e in d.timeline], empty="nothing recorded"))
    return "".join(out)


def _rel(ts: float, now: float) -> str:
    return f"{ago(now - ts)} ago" if ts <= now else f"in {ago(ts - now)}"


def _progress(p: dict[str, object]) -> str:
    current, total = p.get("current"), p.get("total")
    bar = ""
    if (isinstance(current, int | float) and isinstance(total, int | float)
            and total > 0 and not isinstance(current, bool)):
        pct = max(0.0, min(100.0, 100.0 * current / total))
        bar = (f"<div class='progress' role='progressbar' aria-valuenow='{pct:.0f}' "
               f"aria-valuemin='0' aria-valuemax='100'><div style='width:{pct:.1f}%'></div>"
               f"</div><p class='muted'>{esc(current)} of {esc(total)} ({pct:.0f}%)</p>")
    return bar + as_json(p)


def _revoke(base: str, task_id: str, csrf: str, running: bool) -> str:
    b = esc(base)
    action = f"{b}/tasks/{esc(path_part(task_id))}/revoke"
    out = [f"<form method='post' action='{action}' class='actions'>{csrf_field(csrf)}",
           "<button class='danger' data-confirm='Revoke this task? It will not run.'>"
           "Revoke</button>"]
    if running:
        out.append("<button class='danger' name='terminate' value='1' "
                   "data-confirm='Stop this running task now?'>Revoke and stop it</button>")
    out.append("</form>")
    return "".join(out)


def _dead_actions(base: str, task_id: str, csrf: str) -> str:
    """Retry or delete this dead letter; the answer comes back to this page."""
    b = esc(base)
    return (f"<form method='post' action='{b}/dead/retry' class='actions'>{csrf_field(csrf)}"
            f"<input type='hidden' name='ids' value='{esc(task_id)}'>"
            "<input type='hidden' name='back' value='task'>"
            "<button>Retry</button>"
            f"<button class='danger' formaction='{b}/dead/delete' "
            "data-confirm='Delete this dead letter? This cannot be undone.'>Delete</button>"
            "</form>")


def missing(base: str, task_id: str) -> str:
    return (f"<p class='notice error'>Nothing is stored about task <span class='mono'>"
            f"{esc(task_id)}</span>: the id is wrong, or the task finished and its result "
            f"expired (or was never stored).</p><p><a href='{esc(base)}/tasks'>All tasks</a></p>")


__all__ = ["detail", "filters", "listing", "missing"]
