"""The web side of conveyor: an HTTP API under /api, Prometheus metrics at /metrics and the
browser dashboard's pages (`ui.py`, `pages/`), as one ASGI app (`create_app`). Needs the
`dashboard` extra (`pip install conveyor[dashboard]`: Starlette and uvicorn). Run it with
`conveyor dashboard APP`; see docs/protocol.md for the API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .web import DEFAULT_PORT, MAX_WAIT, create_app


def __getattr__(name: str) -> Any:  # Starlette is imported only when the app is asked for
    if name in ("DEFAULT_PORT", "MAX_WAIT", "create_app"):
        from . import web

        return getattr(web, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DEFAULT_PORT", "MAX_WAIT", "create_app"]
