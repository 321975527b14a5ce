"""Which addresses count as this machine only (no Starlette import: the CLI checks `--host`
before it loads the dashboard's extra)."""

from __future__ import annotations

import ipaddress


def is_local(host: str) -> bool:
    """True for a loopback address (127.0.0.0/8, ::1, bracketed or not) or `localhost`."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name in a Host header, without its port: `[::1]:8470` -> `::1`."""
    header = header.strip()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    if header.count(":") == 1:
        return header.split(":", 1)[0]
    return header
