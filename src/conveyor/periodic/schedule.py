"""When a periodic task is due: cron expressions (parsed by cronsim) and fixed intervals.

A schedule maps a point in time (epoch seconds) to its next *tick*: `next_after(t)` is the
first tick strictly after `t`. Every worker computes the same ticks from the same schedule, so
a tick can name itself (`<task>@<tick time>`) and the backend's dedup keys make it happen once.

Cron ticks are computed in the schedule's time zone (the system's local zone unless `tz=`
names one). Daylight-saving changes follow Debian cron, as cronsim implements it: a job at a
fixed time of day (minute and hour fields without `*`) that falls in the hour skipped in spring
runs once, right after the jump (a 02:30 job runs at 03:00); one in the hour repeated in autumn
runs once, at its first occurrence. Jobs with `*` in the minute or hour field (`*/15 * * * *`)
follow real elapsed time: none in the skipped hour, both occurrences of the repeated one.

Intervals (`every=`) are counted from the Unix epoch (multiples of the interval), so they do not
depend on when a worker started or on any time zone.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from ..errors import ConfigError

FIELDS = ("minute", "hour", "day", "month", "day_of_week")
_CRONSIM_FIELDS = {"minute": "minute", "hour": "hour", "day-of-month": "day",
                   "month": "month", "day-of-week": "day_of_week"}
ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
NEVER = math.inf
MIN_INTERVAL = 1.0  # seconds; the scheduler looks about twice a second


class Schedule(Protocol):
    """What the scheduler and the status commands need from a schedule."""

    def next_after(self, t: float) -> float:
        """The first tick strictly after `t` (epoch seconds); `math.inf` if there is none."""

    def ticks_until(self, t: float, n: int) -> list[float]:
        """Up to `n` ticks at or before `t`, newest first."""

    def describe(self) -> str:
        """The schedule as a person reads it, e.g. `*/5 * * * * (Europe/Paris)`."""


# --- time zones ---------------------------------------------------------------------------
def local_zone() -> tzinfo:
    """The system's local zone as a zoneinfo zone (so DST changes are known): `TZ` when set,
    else /etc/localtime. Falls back to the current fixed UTC offset when neither can be read."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        target = os.path.realpath("/etc/localtime")
        if "zoneinfo/" in target:
            return ZoneInfo(target.split("zoneinfo/", 1)[1])
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass
    try:
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError):
        pass
    return datetime.now().astimezone().tzinfo or UTC


def resolve_zone(tz: str | tzinfo | None) -> tzinfo:
    if tz is None:
        return local_zone()
    if isinstance(tz, tzinfo):
        return tz
    if not isinstance(tz, str) or not tz:
        raise ConfigError(f"tz must be an IANA zone name such as 'Europe/Paris', not {tz!r}")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {tz!r}: use an IANA name such as 'Europe/Paris' "
                          "or 'UTC'") from None


def zone_name(zone: tzinfo) -> str:
    key = getattr(zone, "key", None)
    if isinstance(key, str) and key != "localtime":
        return key
    return f"local {datetime.now(zone).strftime('%Z')}".strip()


# --- cron ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cron:
    """A 5-field cron schedule (`minute hour day month day_of_week`) in a time zone. Build it
    with `crontab(...)` or give `@app.periodic` the cron text."""

    expression: str
    tz: tzinfo | None = None  # None: resolved to the local zone when bound to a task
    _checked: bool = field(default=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self._checked:
            object.__setattr__(self, "expression", check_cron(self.expression))
            object.__setattr__(self, "_checked", True)

    def in_zone(self, tz: str | tzinfo | None) -> Cron:
        return Cron(self.expression, resolve_zone(tz), _checked=True)

    @property
    def zone(self) -> tzinfo:
        return self.tz if self.tz is not None else local_zone()

    def next_after(self, t: float) -> float:
        zone = self.zone
        # Whole seconds, floored: cronsim drops sub-seconds anyway, and fromtimestamp() would
        # round 11:59:59.9999996 up to 12:00:00 and so skip a 12:00 tick.
        it = CronSim(self.expression, datetime.fromtimestamp(math.floor(t), zone))
        try:
            while True:
                tick = next(it).timestamp()
                if tick > t:  # guards the repeated autumn hour against an earlier tick
                    return tick
        except StopIteration:  # no match in the next 50 years
            return NEVER

    def ticks_until(self, t: float, n: int) -> list[float]:
        """Walk back with cronsim's reverse iteration to find a start, then forward from it,
        so the ticks are exactly those `next_after` produces."""
        if n <= 0:
            return []
        zone = self.zone
        it = CronSim(self.expression, datetime.fromtimestamp(math.floor(t) + 1, zone),
                     reverse=True)
        start: float | None = None
        try:
            for _ in range(n + 1):
                start = next(it).timestamp()
        except StopIteration:
            pass
        if start is None:
            return []
        out: list[float] = []
        tick = self.next_after(start - 1)
        while tick <= t:
            out.append(tick)
            tick = self.next_after(tick)
        return out[::-1][:n]

    def describe(self) -> str:
        return f"{self.expression} ({zone_name(self.zone)})"


def check_cron(text: str) -> str:
    """Normalize and validate cron text; raises ConfigError naming the bad field."""
    if not isinstance(text, str):
        raise ConfigError(f"a cron schedule must be text such as '*/5 * * * *', not {text!r}")
    expr = " ".join(text.split())
    if expr.startswith("@"):
        alias = ALIASES.get(expr.lower())
        if alias is None:
            raise ConfigError(f"unknown cron alias {expr!r}: use one of "
                              f"{', '.join(ALIASES)} or 5 fields")
        return alias
    parts = expr.split()
    if len(parts) != 5:
        raise ConfigError(f"cron expression {text!r} has {len(parts)} field(s); it needs 5: "
                          f"{' '.join(FIELDS)}")
    try:
        CronSim(expr, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise ConfigError(f"invalid cron expression {text!r}: {_name_field(str(exc), parts)}"
                          ) from None
    return expr


def _name_field(message: str, parts: Sequence[str]) -> str:
    for theirs, ours in _CRONSIM_FIELDS.items():
        if message.endswith(theirs):
            return f"bad {ours} field {parts[FIELDS.index(ours)]!r}"
    return message


def crontab(minute: str | int = "*", hour: str | int = "*", day: str | int = "*",
            month: str | int = "*", day_of_week: str | int = "*") -> Cron:
    """A cron schedule from its fields, e.g. `crontab(minute=0, hour="*/2")`. Each field is a
    number or cron text (`"*/15"`, `"1-5"`, `"mon,wed"`); a list or tuple means a comma list."""
    values = []
    for name, value in zip(FIELDS, (minute, hour, day, month, day_of_week), strict=True):
        if isinstance(value, list | tuple | set | frozenset):
            value = ",".join(str(v) for v in (sorted(value) if isinstance(value, set | frozenset)
                                              else value))
        if isinstance(value, bool) or not isinstance(value, int | str) or str(value).strip() == "":
            raise ConfigError(f"crontab {name}= must be a number or cron text, not {value!r}")
        text = str(value).strip()
        if " " in text:
            raise ConfigError(f"crontab {name}={value!r}: a field cannot contain spaces")
        values.append(text)
    return Cron(" ".join(values))


# --- intervals ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Every:
    """A tick every `seconds`, at multiples of it counted from the Unix epoch."""

    seconds: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.seconds) or self.seconds < MIN_INTERVAL:
            raise ConfigError(f"every= must be at least {MIN_INTERVAL:g} second, "
                              f"not {self.seconds!r}")

    def _index(self, t: float) -> int:
        """k of the latest tick k * seconds at or before t (ticks are always computed as
        k * seconds, so every worker names a tick by the very same float)."""
        k = math.floor(t / self.seconds)
        while k * self.seconds > t:  # float rounding
            k -= 1
        while (k + 1) * self.seconds <= t:
            k += 1
        return k

    def next_after(self, t: float) -> float:
        return (self._index(t) + 1) * self.seconds

    def ticks_until(self, t: float, n: int) -> list[float]:
        k = self._index(t)
        return [(k - i) * self.seconds for i in range(max(0, n))]

    def describe(self) -> str:
        return f"every {_duration(self.seconds)}"


def every(value: float | timedelta) -> Every:
    if isinstance(value, timedelta):
        return Every(value.total_seconds())
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"every= must be seconds or a timedelta, not {value!r}")
    return Every(float(value))


def _duration(s: float) -> str:
    if s != int(s):
        return f"{s:g}s"
    n = int(s)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n}s"


def make_schedule(schedule: str | Cron | None, every_: float | timedelta | None,
                  tz: str | tzinfo | None) -> Schedule:
    """The schedule `@app.periodic` was given: cron text, a `crontab(...)`, or `every=`."""
    if (schedule is None) == (every_ is None):
        raise ConfigError("give a periodic task one schedule: cron text, crontab(...) or "
                          "every=seconds")
    if every_ is not None:
        if tz is not None:
            raise ConfigError("tz= applies to cron schedules; every= intervals are counted in "
                              "seconds from the epoch, in no time zone")
        return every(every_)
    if isinstance(schedule, Cron):
        return schedule.in_zone(tz if tz is not None else schedule.tz)
    if isinstance(schedule, str):
        return Cron(schedule).in_zone(tz)
    raise ConfigError(f"a periodic schedule is cron text, crontab(...) or every=, not "
                      f"{schedule!r} (write @app.periodic(...) with a schedule)")


def longest_gap(schedule: Schedule, start: float, samples: int = 16) -> float:
    """The longest time between two of the next `samples` ticks after `start`."""
    gap, tick = 0.0, schedule.next_after(start)
    for _ in range(samples):
        nxt = schedule.next_after(tick)
        if not math.isfinite(nxt):
            break
        gap = max(gap, nxt - tick)
        tick = nxt
    return gap
