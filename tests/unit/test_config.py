"""Mistakes caught when the app is made or a task decorated, each naming what is wrong."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conveyor import ConfigError, Conveyor


def work(x: int) -> int:
    return x


# --- task options ---------------------------------------------------------------------------
def test_unknown_option_is_named(app: Conveyor) -> None:
    with pytest.raises(ConfigError, match="unknown option.*retrys"):
        app.task(retrys=3)(work)


@pytest.mark.parametrize("options, words", [
    ({"unique": "yes"}, "unique must be True or False"),
    ({"unique_for": -1}, "unique_for must be >= 0"),
    ({"unique_for": "10"}, "unique_for must be seconds"),
])
def test_bad_unique_options(app: Conveyor, options: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        app.task(**options)(work)
    assert app.tasks == {}


def test_the_api_md_example_decorates_with_the_off_values(app: Conveyor) -> None:
    t = app.task(name="shop.resize", queue="media", priority=5, retries=3, retry_delay=2.0,
                 retry_backoff=True, retry_jitter=True, retry_on=(IOError,), timeout=30,
                 rate_limit=None, concurrency=None, unique=False, store_result=True,
                 bind=False)(work)
    assert app.tasks["shop.resize"] is t


@pytest.mark.parametrize("option, bad, words", [
    ("unique_key", 5, "unique_key must be a non-empty string"),
    ("link", "x", "link and link_error take signatures"),
    ("link_error", "x", "link and link_error take signatures"),
])
def test_workflow_and_unique_call_options(app: Conveyor, option: str, bad: Any,
                                          words: str) -> None:
    t = app.task(work)
    assert t.apply_async((1,), **{option: None}).id
    with pytest.raises(ConfigError, match=words):
        t.apply_async((1,), **{option: bad})


@pytest.mark.parametrize("value", [-1, "3", 1.5, True, None])
def test_bad_retries(app: Conveyor, value: Any) -> None:
    with pytest.raises(ConfigError, match="retries"):
        app.task(retries=value)(work)


@pytest.mark.parametrize("value", [0, -5, "30", True, [1]])
def test_bad_timeout(app: Conveyor, value: Any) -> None:
    with pytest.raises(ConfigError, match="timeout"):
        app.task(timeout=value)(work)


def test_timeout_accepts_seconds_and_timedelta(app: Conveyor) -> None:
    assert app.task(name="a", timeout=2)(work).options.timeout == 2.0
    assert app.task(name="b", timeout=timedelta(minutes=1))(work).options.timeout == 60.0


@pytest.mark.parametrize("option, value", [
    ("priority", "high"),
    ("priority", 1.5),
    ("retry_on", ("IOError",)),
    ("retry_on", [ValueError, 3]),
    ("retry_delay", "2s"),
    ("result_ttl", "1d"),
])
def test_other_bad_options_are_named(app: Conveyor, option: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=option):
        app.task(**{option: value})(work)


def test_error_names_the_task(app: Conveyor) -> None:
    with pytest.raises(ConfigError, match=re.escape("task shop.resize")):
        app.task(name="shop.resize", retries=-1)(work)


def test_bare_decorator_with_options_is_refused(app: Conveyor) -> None:
    with pytest.raises(ConfigError):
        app.task(work, retries=2)  # type: ignore[call-overload]


def test_decorating_a_task_again_is_refused(app: Conveyor) -> None:
    t = app.task(work)
    with pytest.raises(ConfigError, match="already a task"):
        app.task(t)


def test_two_functions_under_one_name_are_refused(app: Conveyor) -> None:
    app.task(name="same")(work)

    def other(x: int) -> int:
        return -x

    with pytest.raises(ConfigError, match="same"):
        app.task(name="same")(other)


def test_apply_async_unknown_option(app: Conveyor) -> None:
    t = app.task(work)
    with pytest.raises(ConfigError, match="bogus"):
        t.apply_async((1,), bogus=1)


def test_apply_async_countdown_and_eta_together(app: Conveyor) -> None:
    t = app.task(work)
    with pytest.raises(ConfigError, match="countdown or eta"):
        t.apply_async((1,), countdown=1, eta=datetime.now(UTC))


@pytest.mark.parametrize("value", [-1, "2"])
def test_apply_async_bad_retries(app: Conveyor, value: Any) -> None:
    t = app.task(work)
    with pytest.raises(ConfigError, match="retries"):
        t.apply_async((1,), retries=value)
    assert app.backend.queue_stats(app.clock.now()) == {}


# --- app settings ---------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["nosuch://host/db", "conveyor.db", "://x"])
def test_unknown_scheme_names_url_and_schemes(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        Conveyor(url)
    text = str(info.value)
    assert url in text
    assert "memory://" in text and "sqlite://" in text


def test_unknown_scheme_hides_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        Conveyor("nosuch://user:hunter2@host/db")
    assert "hunter2" not in str(info.value)
    assert "nosuch://user:***@host/db" in str(info.value)


@pytest.mark.parametrize("template", [
    "sqlite:///{tmp}/no/such/dir/tasks.db",  # directory missing
    "sqlite://",  # names no file
    "sqlite:///:memory:",  # not shared between processes
    "sqlite://otherhost/tasks.db",  # a host where a path should be
    "sqlite:///{tmp}/t.db?journal=off",  # unknown option
    "sqlite:///{tmp}/t.db?synchronous=sometimes",
], ids=["missing-dir", "no-file", "in-memory", "host", "unknown-option", "bad-synchronous"])
def test_bad_sqlite_url_names_the_url(tmp_path: Path, template: str) -> None:
    url = template.format(tmp=tmp_path)
    with pytest.raises(ConfigError) as info:
        Conveyor(url)
    assert url in str(info.value)


def test_bad_sqlite_path_names_the_schemes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="memory://"):
        Conveyor(f"sqlite:///{tmp_path}/no/such/dir/tasks.db")


def test_sqlite_app_does_no_io_until_used(tmp_path: Path) -> None:
    Conveyor(f"sqlite:///{tmp_path}/lazy.db")
    assert not (tmp_path / "lazy.db").exists()


def test_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_URL", "memory://")
    assert Conveyor().url == "memory://"


@pytest.mark.parametrize("lease", [0, 0.5, -1])
def test_lease_too_short(lease: float) -> None:
    with pytest.raises(ConfigError, match="lease"):
        Conveyor("memory://", lease=lease)


def test_bad_result_ttl() -> None:
    with pytest.raises(ConfigError, match="result_ttl"):
        Conveyor("memory://", result_ttl="1 day")  # type: ignore[arg-type]
