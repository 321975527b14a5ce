"""examples/fastapi_app.py under FastAPI's TestClient, on memory:// (skipped without fastapi)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")  # TestClient needs it

from fastapi.testclient import TestClient  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fastapi_app.py"


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.setenv("CONVEYOR_URL", "memory://")
    spec = importlib.util.spec_from_file_location("fastapi_app", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fastapi_app"] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("fastapi_app", None)


def test_enqueue_then_wait_for_the_value(example: ModuleType) -> None:
    closed: list[bool] = []
    real_close = example.app.close
    example.app.close = lambda: (closed.append(True), real_close())[-1]
    with TestClient(example.api) as client:
        r = client.post("/thumbnails/42")
        assert r.status_code == 202
        task_id = r.json()["task_id"]
        assert client.get(f"/tasks/{task_id}").json()["state"] == "PENDING"
        assert example.app.drain() == 1  # the worker's part, in this process
        body = client.get(f"/tasks/{task_id}", params={"wait": 2}).json()
        assert body == {"task_id": task_id, "state": "SUCCESS",
                        "value": {"image_id": 42, "thumbnail": "/thumbs/42.jpg"}}
    assert closed == [True]  # the lifespan closed the backend on shutdown
