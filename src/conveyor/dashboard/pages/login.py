"""The login form shown when the dashboard has a token and the browser has no session."""

from __future__ import annotations

from .html import bare, esc


def render(base: str, next_path: str, error: str | None = None) -> str:
    msg = f"<p class='notice error' role='alert'>{esc(error)}</p>" if error else ""
    return bare("Log in", (
        f"{msg}<p class='muted'>This dashboard needs its token (the one given to "
        "<code>conveyor dashboard --token</code> or in CONVEYOR_DASHBOARD_TOKEN).</p>"
        f"<form method='post' action='{esc(base)}/login'>"
        f"<input type='hidden' name='next' value='{esc(next_path)}'>"
        "<label>Token <input type='password' name='token' autocomplete='current-password' "
        "required autofocus></label><button>Log in</button></form>"), base)


def error_page(base: str, status: int, message: str) -> str:
    return bare(f"Error {status}", f"<p class='notice error'>{esc(message)}</p>"
                f"<p><a href='{esc(base)}/'>Back to the overview</a></p>", base)
