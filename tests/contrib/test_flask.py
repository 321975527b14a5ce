"""conveyor.contrib.flask: settings from app.config, tasks inside the Flask app context."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

flask = pytest.importorskip("flask")

from conveyor import ConfigError, FakeClock  # noqa: E402
from conveyor.contrib.flask import FlaskConveyor  # noqa: E402


def test_tasks_declared_before_init_app_run_in_the_app_context() -> None:
    conveyor = FlaskConveyor(clock=FakeClock(start=time.time()))

    @conveyor.task
    def whoami(suffix: str) -> str:
        return flask.current_app.config["NAME"] + suffix

    app = flask.Flask("shop")
    app.config.update(NAME="shop", CONVEYOR_URL="memory://", CONVEYOR_DEFAULT_QUEUE="web")
    conveyor.init_app(app)
    assert app.extensions["conveyor"] is conveyor
    assert conveyor.url == "memory://" and conveyor.default_queue == "web"
    assert conveyor.tasks[whoami.name] is whoami

    r = whoami.delay("!")  # enqueued outside any app context
    assert conveyor.drain() == 1
    assert r.get(timeout=1) == "shop!"
    conveyor.close()


def test_eager_from_config_and_a_view(tmp_path: Path) -> None:
    app = flask.Flask("eager")
    app.config.update(CONVEYOR_URL=f"sqlite:///{tmp_path}/q.db", CONVEYOR_EAGER="true",
                      CONVEYOR_RESULT_TTL="60")
    conveyor = FlaskConveyor(app)

    @conveyor.task
    def double(x: int) -> int:
        assert flask.has_app_context()
        return 2 * x

    @app.post("/double/<int:x>")
    def view(x: int) -> dict[str, object]:
        r = double.delay(x)
        return {"id": r.id, "value": r.get(timeout=1)}

    assert conveyor.eager and conveyor.result_ttl == 60
    body = app.test_client().post("/double/21").get_json()
    assert body["value"] == 42
    assert conveyor.result(body["id"]).get() == 42


def test_keyword_arguments_win_over_config() -> None:
    app = flask.Flask("kw")
    app.config["CONVEYOR_URL"] = "sqlite:///never-used.db"
    conveyor = FlaskConveyor(app, "memory://", default_queue="kw")
    assert conveyor.url == "memory://" and conveyor.default_queue == "kw"
    app.config["CONVEYOR_LEASE"] = "soon"
    with pytest.raises(ConfigError):
        FlaskConveyor(app)


def test_the_example_app(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util
    import sys

    monkeypatch.setenv("CONVEYOR_URL", "memory://")
    path = Path(__file__).resolve().parents[2] / "examples" / "flask_app.py"
    spec = importlib.util.spec_from_file_location("flask_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "flask_app", module)
    spec.loader.exec_module(module)
    client = module.app.test_client()
    task_id = client.post("/signup/ada").get_json()["task_id"]
    assert client.get(f"/tasks/{task_id}").get_json()["state"] == "PENDING"
    assert module.conveyor.drain() == 1
    assert client.get(f"/tasks/{task_id}").get_json()["value"] == (
        "welcome mail to ada from hello@example.com")
    module.conveyor.close()
