"""`conveyor dashboard`: serve the HTTP API, /metrics and the browser dashboard with uvicorn."""

from __future__ import annotations

import os

import click

from ..dashboard.hosts import is_local
from .common import APP_HELP, BadUsage, app_argument, load

TOKEN_ENV = "CONVEYOR_DASHBOARD_TOKEN"


@click.command(epilog=f"{APP_HELP} Prefer the {TOKEN_ENV} environment variable to --token: "
                      "a command line is visible to every user of the machine.")
@app_argument()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback needs a token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8470, show_default=True)
@click.option("--token", default=None, metavar="T",
              help=f"Require 'Authorization: Bearer T' on every request (or set {TOKEN_ENV}).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def dashboard(app_path: str, host: str, port: int, token: str | None, log_level: str) -> None:
    """Serve the browser dashboard, the HTTP API (/api) and Prometheus metrics.

    Listens on 127.0.0.1 unless --host says otherwise; on any other address it refuses to
    start without a token.
    """
    if token is None:
        token = os.environ.get(TOKEN_ENV) or None
    if token is not None and not token.strip():
        raise BadUsage("the dashboard token must not be empty")
    if token is None and not is_local(host):
        raise BadUsage(f"refusing to listen on {host} without a token: pass --token or set "
                       f"{TOKEN_ENV} (or listen on 127.0.0.1)")
    try:
        import uvicorn

        from ..dashboard import create_app
    except ImportError as exc:
        raise BadUsage(f"the dashboard needs its extra: pip install 'conveyor[dashboard]' "
                       f"({exc})") from None
    app = load(app_path)
    uvicorn.run(create_app(app, token=token), host=host, port=port, log_level=log_level,
                server_header=False)
