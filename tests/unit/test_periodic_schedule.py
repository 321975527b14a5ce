"""Schedules of periodic tasks: parsing cron text (and its errors), crontab(), intervals, and
the next-tick computation (hypothesis), including daylight-saving changes."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from conveyor import ConfigError, crontab
from conveyor.periodic.schedule import Cron, Every, every, local_zone, make_schedule

NY = ZoneInfo("America/New_York")
PARIS = ZoneInfo("Europe/Paris")


def ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, tz: ZoneInfo = NY,
       fold: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=tz, fold=fold).timestamp()


def ticks(schedule: Cron | Every, start: float, end: float) -> list[float]:
    out, t = [], schedule.next_after(start)
    while t <= end:
        out.append(t)
        t = schedule.next_after(t)
    return out


# --- parsing --------------------------------------------------------------------------------
@pytest.mark.parametrize(("alias", "expression"), [
    ("@hourly", "0 * * * *"), ("@daily", "0 0 * * *"), ("@midnight", "0 0 * * *"),
    ("@weekly", "0 0 * * 0"), ("@monthly", "0 0 1 * *"), ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"), ("@DAILY", "0 0 * * *"),
])
def test_aliases(alias: str, expression: str) -> None:
    assert Cron(alias).expression == expression


@pytest.mark.parametrize(("text", "field"), [
    ("61 * * * *", "minute"), ("* 24 * * *", "hour"), ("* * 0 * *", "day"),
    ("* * 32 * *", "day"), ("* * * 13 *", "month"), ("* * * * 8", "day_of_week"),
    ("* * * * MOO", "day_of_week"), ("*/0 * * * *", "minute"), ("5-1 * * * *", "minute"),
    ("0 0 30 2 *", "day"),
])
def test_invalid_field_is_named(text: str, field: str) -> None:
    with pytest.raises(ConfigError, match=f"bad {field} field"):
        Cron(text)


@pytest.mark.parametrize("text", ["* * * *", "0 * * * * *", "", "@reboot", "@every 5m"])
def test_wrong_shape_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="field|alias"):
        Cron(text)


def test_crontab_builds_cron_text() -> None:
    assert crontab(minute=0, hour="*/2").expression == "0 */2 * * *"
    assert crontab().expression == "* * * * *"
    assert crontab(minute=[0, 30], day_of_week="mon-fri").expression == "0,30 * * * mon-fri"
    with pytest.raises(ConfigError, match="bad hour field '25'"):
        crontab(hour=25)
    with pytest.raises(ConfigError, match="day_of_week"):
        crontab(day_of_week=None)  # type: ignore[arg-type]


def test_make_schedule_checks_its_arguments() -> None:
    assert isinstance(make_schedule(None, 30, None), Every)
    assert make_schedule(None, timedelta(minutes=2), None).describe() == "every 2m"
    assert make_schedule("*/5 * * * *", None, "UTC").describe() == "*/5 * * * * (UTC)"
    assert make_schedule(crontab(minute=0), None, "Europe/Paris").describe() == \
        "0 * * * * (Europe/Paris)"
    for bad in [(None, None, None), ("* * * * *", 5, None)]:
        with pytest.raises(ConfigError, match="one schedule"):
            make_schedule(*bad)
    with pytest.raises(ConfigError, match="tz= applies to cron"):
        make_schedule(None, 30, "UTC")
    with pytest.raises(ConfigError, match="unknown time zone 'Mars/Olympus'"):
        make_schedule("* * * * *", None, "Mars/Olympus")
    with pytest.raises(ConfigError, match="at least 1 second"):
        every(0.5)
    with pytest.raises(ConfigError, match="seconds or a timedelta"):
        every("5")  # type: ignore[arg-type]


def test_default_zone_is_the_local_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    assert local_zone() == ZoneInfo("Asia/Tokyo")
    cron = make_schedule("0 9 * * *", None, None)
    assert cron.describe() == "0 9 * * * (Asia/Tokyo)"
    assert cron.next_after(datetime(2024, 4, 30, 20, tzinfo=UTC).timestamp()) == \
        datetime(2024, 5, 1, 9, tzinfo=ZoneInfo("Asia/Tokyo")).timestamp()


# --- daylight saving ------------------------------------------------------------------------
def test_spring_forward_job_in_the_gap_runs_once_after_the_jump() -> None:
    cron = Cron("30 2 * * *").in_zone(NY)  # 2024-03-10 02:00 EST -> 03:00 EDT
    got = ticks(cron, ts(2024, 3, 9), ts(2024, 3, 12))
    assert got == [ts(2024, 3, 9, 2, 30), ts(2024, 3, 10, 3, 0), ts(2024, 3, 11, 2, 30)]


def test_fall_back_job_in_the_repeated_hour_runs_once() -> None:
    cron = Cron("30 1 * * *").in_zone(NY)  # 2024-11-03 02:00 EDT -> 01:00 EST
    got = ticks(cron, ts(2024, 11, 2), ts(2024, 11, 5))
    assert got == [ts(2024, 11, 2, 1, 30), ts(2024, 11, 3, 1, 30, fold=0),
                   ts(2024, 11, 4, 1, 30)]
    # Asked from inside the repeated hour (after the first 01:30), it does not go back to it.
    after_first = ts(2024, 11, 3, 1, 15, fold=1)
    assert cron.next_after(after_first) == ts(2024, 11, 4, 1, 30)


def test_europe_transitions() -> None:
    cron = Cron("30 2 * * *").in_zone(PARIS)
    spring = ticks(cron, ts(2024, 3, 30, tz=PARIS), ts(2024, 4, 2, tz=PARIS))
    autumn = ticks(cron, ts(2024, 10, 26, tz=PARIS), ts(2024, 10, 29, tz=PARIS))
    assert len(spring) == 3 and len(autumn) == 3
    assert spring[1] == ts(2024, 3, 31, 3, 0, tz=PARIS)


def test_interval_like_cron_follows_real_time_through_transitions() -> None:
    cron = Cron("*/30 * * * *").in_zone(NY)
    autumn = ticks(cron, ts(2024, 11, 3, 0, 59), ts(2024, 11, 3, 2, 1))
    assert [b - a for a, b in zip(autumn, autumn[1:], strict=False)] == [1800.0] * 4  # 01:xx twice
    spring = ticks(cron, ts(2024, 3, 10, 0, 59), ts(2024, 3, 10, 4, 1))
    assert [datetime.fromtimestamp(t, NY).strftime("%H:%M") for t in spring] == \
        ["01:00", "01:30", "03:00", "03:30", "04:00"]


# --- next tick: properties ------------------------------------------------------------------
def _field(lo: int, hi: int) -> st.SearchStrategy[str]:
    n = st.integers(lo, hi)
    return st.one_of(
        st.just("*"),
        n.map(str),
        st.integers(1, hi - lo + 1).map(lambda k: f"*/{k}"),
        st.tuples(n, n).map(lambda p: f"{min(p)}-{max(p)}"),
        st.lists(n, min_size=2, max_size=4, unique=True).map(lambda v: ",".join(map(str, v))),
        # a-b/step with a < b (cronsim reads a degenerate a-a/step as a/step)
        st.tuples(n, n, st.integers(1, 5)).filter(lambda p: p[0] != p[1])
        .map(lambda p: f"{min(p[:2])}-{max(p[:2])}/{p[2]}"),
    )


CRON = st.tuples(_field(0, 59), _field(0, 23), st.one_of(st.just("*"), _field(1, 28)),
                 st.one_of(st.just("*"), _field(1, 12)),
                 st.one_of(st.just("*"), _field(0, 6))).map(" ".join)
ZONES = st.sampled_from(["UTC", "America/New_York", "Europe/Paris", "Australia/Lord_Howe",
                         "Asia/Kolkata", "America/Sao_Paulo"])
NO_DST = st.sampled_from(["UTC", "Asia/Kolkata", "Asia/Tokyo"])
MOMENTS = st.floats(min_value=946684800.0, max_value=2208988800.0)  # 2000 .. 2040


def _matches(expr: str, local: datetime) -> bool:
    """An independent reading of 5-field cron (numbers, *, ranges, lists, steps)."""
    def hit(field: str, value: int, lo: int, hi: int) -> bool:
        for part in field.split(","):
            base, _, step = part.partition("/")
            if base == "*":
                a, b = lo, hi
            elif "-" in base:
                a, b = map(int, base.split("-"))
            else:
                a = int(base)
                b = hi if step else a
            if a <= value <= b and (value - a) % int(step or 1) == 0:
                return True
        return False
    m, h, dom, mon, dow = expr.split()
    day_ok = hit(dom, local.day, 1, 31)
    dow_ok = hit(dow, (local.weekday() + 1) % 7, 0, 6)
    day = (day_ok and dow_ok) if dom.startswith("*") or dow.startswith("*") else (day_ok or dow_ok)
    return (hit(m, local.minute, 0, 59) and hit(h, local.hour, 0, 23) and day
            and hit(mon, local.month, 1, 12))


@settings(max_examples=150, deadline=None)
@given(CRON, ZONES, MOMENTS, st.floats(0, 1))
def test_next_tick_is_after_and_stable(expr: str, zone: str, t: float, frac: float) -> None:
    cron = Cron(expr).in_zone(zone)
    n = cron.next_after(t)
    assume(math.isfinite(n))
    assert n > t
    assert n == int(n) and n % 60 == 0
    # Every scheduler asking from anywhere before the tick gets the same tick.
    between = t + frac * (n - t)
    if between < n:
        assert cron.next_after(between) == n
    assert cron.next_after(n - 0.5) == n
    # The latest tick at or before a moment leads to the same next tick.
    latest = cron.ticks_until(t, 1)
    if latest:
        assert latest[0] <= t and cron.next_after(latest[0]) == n
    back = cron.ticks_until(n, 3)
    assert back[0] == n and back == sorted(back, reverse=True)


@settings(max_examples=150, deadline=None)
@given(CRON, NO_DST, MOMENTS)
def test_next_tick_is_the_first_matching_minute(expr: str, zone: str, t: float) -> None:
    cron = Cron(expr).in_zone(zone)
    tz = ZoneInfo(zone)
    n = cron.next_after(t)
    assert _matches(expr, datetime.fromtimestamp(n, tz))
    minute = math.floor(t / 60) * 60 + 60  # the first whole minute after t
    for _ in range(int(min(n - minute, 3 * 86400) // 60)):  # none earlier (looked at 3 days)
        assert not _matches(expr, datetime.fromtimestamp(minute, tz)), minute
        minute += 60


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 59), st.integers(0, 23), st.sampled_from(["America/New_York",
       "Europe/Paris", "Australia/Lord_Howe", "America/Sao_Paulo"]), MOMENTS)
def test_daily_job_runs_once_a_day_through_any_transition(minute: int, hour: int, zone: str,
                                                        t: float) -> None:
    cron = Cron(f"{minute} {hour} * * *").in_zone(zone)
    got = ticks(cron, t, t + 5 * 86400)
    dates = [datetime.fromtimestamp(x, ZoneInfo(zone)).date() for x in got]
    assert len(dates) == len(set(dates))  # never twice on one local day
    assert all(21 * 3600 <= b - a <= 27 * 3600 for a, b in zip(got, got[1:], strict=False))


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.integers(1, 10**6).map(float), st.floats(1, 10**6)), MOMENTS,
       st.floats(0, 1))
def test_interval_ticks_are_epoch_multiples(seconds: float, t: float, frac: float) -> None:
    sched = Every(seconds)
    n = sched.next_after(t)
    assert t < n <= t + seconds * (1 + 1e-9)
    assert math.isclose(n / seconds, round(n / seconds), abs_tol=1e-6)
    between = t + frac * (n - t)
    if between < n:
        assert sched.next_after(between) == n
    back = sched.ticks_until(t, 3)
    assert back[0] <= t < back[0] + seconds * (1 + 1e-9)
    assert sched.next_after(back[0]) == n
