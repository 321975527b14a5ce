"""Dead letters: the list with checkboxes, and one form to retry or delete the checked ones
or all of them. The form sits outside the live region (its checkboxes point at it with
`form=`), so a refresh never resets a half-made choice."""

from __future__ import annotations

import json
from collections.abc import Sequence

from ...inspect import DeadTask
from .html import csrf_field, esc, path_part, query, table, when

FORM = "dead-form"


def actions(base: str, csrf: str) -> str:
    b = esc(base)
    return (
        f"<form id='{FORM}' method='post' action='{b}/dead/retry'>{csrf_field(csrf)}"
        "<div class='actions'>"
        f"<button formaction='{b}/dead/retry'>Retry selected</button>"
        f"<button class='danger' formaction='{b}/dead/delete' "
        "data-confirm='Delete the selected dead letters? This cannot be undone.'>"
        "Delete selected</button>"
        f"<button class='secondary' name='all' value='1' formaction='{b}/dead/retry' "
        "data-confirm='Put every dead letter back in its queue?'>Retry all</button>"
        f"<button class='danger' name='all' value='1' formaction='{b}/dead/delete' "
        "data-confirm='Delete every dead letter? This cannot be undone.'>Delete all</button>"
        "</div></form>")


def _call(d: DeadTask) -> str:
    """`task(args, kwargs)` shortened for a table cell; the detail page shows all of it."""
    parts = [json.dumps(a, ensure_ascii=False, default=repr) for a in d.args]
    parts += [f"{k}={json.dumps(v, ensure_ascii=False, default=repr)}"
              for k, v in d.kwargs.items()]
    text = ", ".join(parts)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"<span class='mono'>{esc(d.task)}({esc(text)})</span>"


def render(base: str, count: int, rows: Sequence[DeadTask], limit: int, offset: int) -> str:
    head = "<input type='checkbox' data-select-all aria-label='select all'>"
    out = []
    for d in rows:
        box = (f"<input type='checkbox' name='ids' value='{esc(d.id)}' form='{FORM}' "
               f"aria-label='select {esc(d.id)}'>")
        link = f"<a class='mono' href='{esc(base)}/tasks/{esc(path_part(d.id))}'>{esc(d.id)}</a>"
        task = _call(d) if d.decode_error is None else (
            f"<span class='muted' title='{esc(d.decode_error)}'>cannot decode</span>")
        out.append((box, link, task, esc(d.queue), esc(d.reason), when(d.died_at),
                    str(d.attempts)))
    html = [f"<p class='muted'>{count} dead letter{'' if count == 1 else 's'}</p>"]
    if out:
        html.append(table(["", "id", "task", "queue", "reason", "died", "attempts"], out, {6},
                          cls="dead").replace("<th></th>", f"<th>{head}</th>", 1))
    else:
        html.append("<p class='muted'>none: every task either succeeded or is still trying"
                    "</p>")
    html.append(_pager(base, count, limit, offset))
    return "".join(html)


def _pager(base: str, count: int, limit: int, offset: int) -> str:
    links = []
    if offset > 0:
        prev = max(0, offset - limit)
        links.append(f"<a href='{esc(base)}/dead{esc(query(offset=prev or None))}'>"
                     "&larr; older</a>")
    if offset + limit < count:
        links.append(f"<a href='{esc(base)}/dead{esc(query(offset=offset + limit))}'>"
                     "newer &rarr;</a>")
    if not links:
        return ""
    shown = f"{offset + 1}-{min(count, offset + limit)} of {count}"
    return f"<div class='pager'>{''.join(links)}<span class='muted'>{shown}</span></div>"
