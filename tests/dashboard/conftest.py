"""An app with a few tasks on each backend, and a Starlette TestClient for its dashboard."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

with warnings.catch_warnings():  # newer Starlette would rather use httpx2 than httpx
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from conveyor import Conveyor, Reject  # noqa: E402
from conveyor.dashboard import create_app  # noqa: E402

SECRET_KEY = "s3cret-signing-key-never-shown"


def make_app(url: str) -> Conveyor:
    app = Conveyor(url, secret_key=SECRET_KEY)

    @app.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="boom")
    def boom(message: str = "bad") -> None:
        raise ValueError(message)

    @app.task(name="reject")
    def reject() -> None:
        raise Reject("not today")

    @app.task(name="media.resize", queue="media")
    def resize(path: str, width: int = 100) -> dict[str, object]:
        return {"path": path, "width": width}

    return app


def backend_url(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'tasks.db'}"
    from servers import fresh_postgres_url, fresh_redis_url

    gen = fresh_redis_url() if kind == "redis" else fresh_postgres_url()
    url = next(gen)
    request.addfinalizer(lambda: next(gen, None))
    return url


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Conveyor]:
    a = make_app("memory://")
    yield a
    a.close()


def local_client(asgi: Any, **options: Any) -> TestClient:
    """A TestClient that addresses the server as 127.0.0.1, as a browser on this machine
    does (without a token, the dashboard refuses other Host names)."""
    return TestClient(asgi, base_url="http://127.0.0.1:8470", **options)


@pytest.fixture
def client(app: Conveyor) -> Iterator[TestClient]:
    with local_client(create_app(app)) as c:
        yield c
