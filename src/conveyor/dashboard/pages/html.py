"""Building blocks for the pages. Every function takes plain values and escapes them itself,
except where a parameter says it holds HTML already (those come from these functions)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from ...timefmt import age, local_time
from . import assets

NAV = (("overview", "/", "Overview"), ("tasks", "/tasks", "Tasks"),
       ("dead", "/dead", "Dead letters"), ("periodic", "/periodic", "Periodic"))

STATES = ("PENDING", "SCHEDULED", "STARTED", "PROGRESS", "RETRY", "SUCCESS", "FAILURE",
          "REVOKED")


def esc(value: object) -> str:
    """Text (or anything, via str) made safe inside HTML text and quoted attributes."""
    return escape(str(value), quote=True)


def path_part(value: str) -> str:
    """A value as one URL path segment (a task id may hold `/` or `?`)."""
    return quote(value, safe="")


def query(**params: object) -> str:
    """`?a=1&b=2` from the parameters that are set (None and "" are left out)."""
    kept = {k: str(v) for k, v in params.items() if v is not None and v != ""}
    return "?" + urlencode(kept) if kept else ""


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return esc(local_time(ts))


def ago(seconds: float | None) -> str:
    """`3s`, `4m 05s`, `2h 03m`: how long ago, short enough for a table cell."""
    return "-" if seconds is None else age(seconds)


def state_badge(state: str) -> str:
    return f"<span class='badge s-{esc(state.lower())}'>{esc(state)}</span>"


def as_json(value: Any) -> str:
    """A value shown as indented JSON (values JSON cannot hold shown by their repr)."""
    try:
        text = json.dumps(value, indent=2, ensure_ascii=False, default=repr, sort_keys=True)
    except (TypeError, ValueError):  # keys that cannot be sorted, a circular structure
        text = repr(value)
    return f"<pre class='code'>{esc(text)}</pre>"


def table(head: Sequence[str], rows: Iterable[Sequence[str]], numeric: Iterable[int] = (),
          empty: str = "none", cls: str = "") -> str:
    """`head` is text; `rows` hold HTML already (escape each cell when building it)."""
    num = set(numeric)
    body = []
    for row in rows:
        cells = (f"<td class='n'>{c}</td>" if i in num else f"<td>{c}</td>"
                 for i, c in enumerate(row))
        body.append("<tr>" + "".join(cells) + "</tr>")
    if not body:
        return f"<p class='muted'>{esc(empty)}</p>"
    heads = "".join(f"<th class='n'>{esc(h)}</th>" if i in num else f"<th>{esc(h)}</th>"
                    for i, h in enumerate(head))
    return (f"<table class='{esc(cls)}'><thead><tr>{heads}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def csrf_field(token: str) -> str:
    return f"<input type='hidden' name='csrf' value='{esc(token)}'>"


def notice(text: str | None, error: bool = False) -> str:
    if not text:
        return ""
    return f"<p class='notice{' error' if error else ''}' role='status'>{esc(text)}</p>"


def layout(*, base: str, title: str, active: str, backend: str, body: str, live: str,
           csrf: str | None, logout: bool) -> str:
    """The whole page. `body` (HTML) comes before the live region, `live` (HTML) is the part
    the script refreshes every 2 seconds by fetching the same URL with `partial=1`."""
    nav = "".join(
        f"<a href='{esc(base + href)}'{' class=on aria-current=page' if key == active else ''}>"
        f"{esc(label)}</a>" for key, href, label in NAV)
    out = ""
    if logout and csrf is not None:
        out = (f"<form method='post' action='{esc(base)}/logout' class='logout'>"
               f"{csrf_field(csrf)}<button class='link'>Log out</button></form>")
    return (
        _head(title, base)
        + f"<script src='{esc(base)}/static/dashboard.js?v={assets.VERSION}' defer></script>"
        "</head><body>"
        f"<header><a class='brand' href='{esc(base)}/'>conveyor</a><nav>{nav}</nav>"
        f"<span class='backend' title='backend'>{esc(backend)}</span>"
        "<span id='live-status' class='muted'></span>"
        f"{out}</header><main><h1>{esc(title)}</h1>{body}"
        f"<div id='live' data-live='1'>{live}</div></main></body></html>")


def bare(title: str, body: str, base: str) -> str:
    """A page without navigation or script: the login form and errors."""
    return (_head(title, base)
            + f"</head><body class='bare'><main><h1>{esc(title)}</h1>{body}</main></body></html>")


def _head(title: str, base: str) -> str:
    """The start of every page, up to the stylesheet (the caller closes <head>)."""
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            "<link rel='icon' href='data:,'>"  # no /favicon.ico request
            f"<title>{esc(title)} · conveyor</title>"
            f"<link rel='stylesheet' href='{esc(base)}/static/dashboard.css?v={assets.VERSION}'>")
