"""Times for people: short ages ("4m 05s") and local timestamps, shared by the command line
and the dashboard so both say the same thing the same way."""

from __future__ import annotations

import time


def age(seconds: float) -> str:
    """`3s`, `4m 05s`, `2h 03m`, `3d 04h`: how long, short enough for a table cell."""
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


def local_time(ts: float) -> str:
    """`2026-11-24 07:27:42` in the machine's time zone."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
