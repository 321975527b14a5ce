"""The HTTP API through Starlette's TestClient: enqueue by name, drain in-process, read the
outcome back; errors; long-polling; dead letters; revoke; auth; metrics; the overview page."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from conveyor import Conveyor
from conveyor.dashboard import create_app

from .conftest import SECRET_KEY, backend_url, local_client, make_app

JSON = {"Content-Type": "application/json"}


def enqueue(client: TestClient, task: str, args: list[Any] | None = None,
            **body: Any) -> str:
    r = client.post("/api/tasks", json={"task": task, "args": args or [], **body})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


@pytest.mark.parametrize("kind", ["memory", "sqlite", "redis", "postgresql"])
def test_enqueue_drain_and_read_on_each_backend(kind: str, tmp_path: Path,
                                                request: pytest.FixtureRequest) -> None:
    app = make_app(backend_url(kind, tmp_path, request))
    try:
        with local_client(create_app(app)) as client:
            ok = enqueue(client, "add", [2, 3])
            bad = enqueue(client, "boom", kwargs={"message": "nope"})
            media = enqueue(client, "media.resize", ["a.png"], kwargs={"width": 7})
            assert client.get(f"/api/tasks/{ok}").json() == {"id": ok, "state": "PENDING",
                                                            "ready": False}
            queues = {q["name"]: q for q in client.get("/api/queues").json()["queues"]}
            assert queues["default"]["ready"] == 2 and queues["media"]["ready"] == 1
            assert app.drain() == 3
            assert client.get(f"/api/tasks/{ok}").json() == {
                "id": ok, "state": "SUCCESS", "ready": True, "result": 5}
            assert client.get(f"/api/tasks/{media}").json()["result"] == {"path": "a.png",
                                                                         "width": 7}
            failed = client.get(f"/api/tasks/{bad}").json()
            assert failed["state"] == "FAILURE" and failed["ready"] is True
            assert failed["error"]["type"] == "ValueError"
            assert failed["error"]["message"] == "nope"
            assert "raise ValueError(message)" in failed["error"]["traceback"]
            assert "result" not in failed
    finally:
        app.close()


def test_options_queue_priority_task_id_countdown_eta(client: TestClient) -> None:
    tid = enqueue(client, "add", [1, 1], options={"task_id": "mine-1", "queue": "other",
                                                 "priority": 5})
    assert tid == "mine-1"
    enqueue(client, "add", [1, 2], options={"countdown": 3600})
    enqueue(client, "add", [1, 3], options={"eta": "2999-01-01T00:00:00+00:00"})
    enqueue(client, "add", [1, 4], options={"eta": time.time() + 3600})
    queues = {q["name"]: q for q in client.get("/api/queues").json()["queues"]}
    assert queues["other"]["ready"] == 1
    assert queues["default"] == {"name": "default", "ready": 0, "scheduled": 3, "running": 0}


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"task": "nope"}, 400, "unknown task 'nope'"),
    ({"task": "resize"}, 400, "did you mean 'media.resize'"),
    ({"task": "ad"}, 400, "did you mean 'add'"),
    ({"task": "add", "args": [1]}, 400, "add:"),  # missing argument, from the signature
    ({"task": "add", "args": [1, 2, 3]}, 400, "add:"),
    ({"task": "add", "kwargs": {"c": 1}, "args": [1, 2]}, 400, "add:"),
    ({"task": "add", "args": {"a": 1}}, 400, "'args' must be an array, not an object"),
    ({"task": "add", "args": [1, 2], "kwargs": []}, 400, "'kwargs' must be an object"),
    ({"task": "add", "args": [1, 2], "options": {"delay": 1}}, 400, "unknown option(s) delay"),
    ({"task": "add", "args": [1, 2], "options": {"countdown": -1}}, 400, "'countdown'"),
    ({"task": "add", "args": [1, 2], "options": {"countdown": 1, "eta": 5}}, 400,
     "countdown or eta, not both"),
    ({"task": "add", "args": [1, 2], "options": {"eta": "tomorrow"}}, 400, "ISO 8601"),
    ({"task": "add", "args": [1, 2], "options": {"eta": "2030-01-01T00:00:00"}}, 400,
     "needs a timezone"),
    ({"task": "add", "args": [1, 2], "options": {"priority": "high"}}, 400,
     "priority must be an integer"),
    ({"task": "add", "args": [1, 2], "options": {"task_id": ""}}, 400, "task_id"),
    ({"task": "add", "args": [1, 2], "when": 1}, 400, "unknown field(s) when"),
    ({"args": [1, 2]}, 400, "'task' must be"),
    ([1, 2], 400, "must be a JSON object, not an array"),
])
def test_enqueue_errors_are_clear_json(client: TestClient, app: Conveyor, body: Any,
                                       status: int, message: str) -> None:
    r = client.post("/api/tasks", json=body)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    assert app.drain() == 0  # nothing was enqueued


def test_change_needs_a_json_body(client: TestClient) -> None:
    r = client.post("/api/tasks", content=b"task=add", headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415 and "application/json" in r.json()["error"]
    r = client.post("/api/tasks", content=b"{nope", headers=JSON)
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    r = client.post("/api/tasks", content=b"", headers=JSON)
    assert r.status_code == 400 and "empty" in r.json()["error"]
    assert client.put("/api/tasks").status_code == 405  # GET lists tasks (test_tasks_api)
    assert client.put("/api/tasks").json() == {"error": "method PUT not allowed here"}
    assert client.get("/api/nothing").json() == {"error": "no such endpoint"}


def test_long_poll_returns_when_the_task_finishes(client: TestClient, app: Conveyor) -> None:
    tid = enqueue(client, "add", [20, 22])
    runner = threading.Timer(0.3, app.drain)
    runner.start()
    try:
        started = time.monotonic()
        body = client.get(f"/api/tasks/{tid}", params={"wait": 20}).json()
        took = time.monotonic() - started
    finally:
        runner.join()
    assert body == {"id": tid, "state": "SUCCESS", "ready": True, "result": 42}
    assert 0.2 < took < 10


def test_long_poll_times_out_with_the_current_state(client: TestClient) -> None:
    tid = enqueue(client, "add", [1, 2])
    started = time.monotonic()
    body = client.get(f"/api/tasks/{tid}", params={"wait": 0.3}).json()
    assert body == {"id": tid, "state": "PENDING", "ready": False}
    assert time.monotonic() - started >= 0.25


@pytest.mark.parametrize("wait", ["-1", "61", "nan", "soon"])
def test_long_poll_wait_is_checked(client: TestClient, wait: str) -> None:
    r = client.get("/api/tasks/x", params={"wait": wait})
    assert r.status_code == 400 and "'wait'" in r.json()["error"]


def test_dead_letters_list_and_retry(client: TestClient, app: Conveyor) -> None:
    first, second = enqueue(client, "reject"), enqueue(client, "reject")
    app.drain()
    dead = client.get("/api/dead").json()
    assert dead["count"] == 2
    assert [(d["id"], d["task"], d["reason"]) for d in dead["dead"]] == [
        (first, "reject", "rejected: not today"), (second, "reject", "rejected: not today")]
    assert client.get("/api/dead", params={"limit": 1, "offset": 1}).json()["dead"][0][
        "id"] == second
    assert client.get("/api/dead", params={"limit": 0}).status_code == 400

    r = client.post("/api/dead/retry", json={"ids": [first]})
    assert r.json() == {"retried": [first]}
    assert client.get("/api/dead").json()["count"] == 1
    assert client.post("/api/dead/retry", json={"all": True}).json() == {"retried": [second]}
    assert client.get("/api/dead").json()["count"] == 0
    for body in ({}, {"ids": [first], "all": True}, {"ids": "x"}, {"all": "yes"}):
        r = client.post("/api/dead/retry", json=body)
        assert r.status_code == 400, body


def test_revoke(client: TestClient, app: Conveyor) -> None:
    tid = enqueue(client, "add", [1, 2])
    assert client.post(f"/api/tasks/{tid}/revoke", json={}).json() == {"id": tid,
                                                                       "revoked": True}
    app.drain()
    assert client.get(f"/api/tasks/{tid}").json()["state"] == "REVOKED"
    # no body at all is fine too; nothing left to revoke now
    assert client.post(f"/api/tasks/{tid}/revoke").json()["revoked"] is False
    r = client.post(f"/api/tasks/{tid}/revoke", json={"terminate": "yes"})
    assert r.status_code == 400


def test_workers_listed(client: TestClient, app: Conveyor) -> None:
    from conveyor.backends.base import WorkerInfo

    assert client.get("/api/workers").json() == {"workers": []}
    app.backend.put_worker(WorkerInfo("n1:42:abc", {"node": "n1", "pid": 42, "pool": "thread",
                                                    "concurrency": 4, "queues": ["default"],
                                                    "started_at": 1.0}),
                           app.clock.now(), 30.0)
    (w,) = client.get("/api/workers").json()["workers"]
    assert (w["id"], w["node"], w["pid"], w["pool"], w["concurrency"], w["queues"]) == (
        "n1:42:abc", "n1", 42, "thread", 4, ["default"])
    assert w["age"] >= 0 and w["started_at"] == 1.0


def test_token_required_on_every_request(app: Conveyor) -> None:
    with TestClient(create_app(app, token="t0k")) as client:
        for path in ("/", "/metrics", "/api/queues", "/api/openapi.json", "/api/tasks/x"):
            r = client.get(path)
            assert r.status_code == 401, path
            assert "Bearer" in r.json()["error"] and "t0k" not in r.text
            assert client.get(path, headers={"Authorization": "Bearer wrong"}
                              ).status_code == 401
        r = client.post("/api/tasks", json={"task": "add", "args": [1, 2]})
        assert r.status_code == 401
        auth = {"Authorization": "Bearer t0k"}
        assert client.get("/api/queues", headers=auth).status_code == 200
        r = client.post("/api/tasks", json={"task": "add", "args": [1, 2]}, headers=auth)
        assert r.status_code == 201
    assert app.drain() == 1


@pytest.mark.parametrize("host", ["evil.example", "testserver", "10.0.0.1:8470"])
def test_without_a_token_only_local_host_names_are_served(app: Conveyor, host: str) -> None:
    """A page whose own name resolves to 127.0.0.1 (DNS rebinding) must not reach the API."""
    with local_client(create_app(app)) as client:
        r = client.post("/api/tasks", json={"task": "add", "args": [1, 2]},
                        headers={"Host": host})
        assert r.status_code == 403 and "127.0.0.1 or localhost" in r.json()["error"]
        assert client.get("/", headers={"Host": host}).status_code == 403
        for ok in ("localhost:8470", "[::1]:8470", "127.0.0.1"):
            assert client.get("/api/queues", headers={"Host": ok}).status_code == 200
    assert app.drain() == 0


def test_metrics(client: TestClient, app: Conveyor) -> None:
    enqueue(client, "add", [1, 2])
    enqueue(client, "add", [1, 2], options={"countdown": 600})
    enqueue(client, "reject")
    app.drain()
    r = client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = r.text.splitlines()
    assert 'conveyor_queue_tasks{queue="default",state="scheduled"} 1' in lines
    assert 'conveyor_queue_tasks{queue="media",state="ready"} 0' in lines
    assert "conveyor_dead_letters 1" in lines
    assert "conveyor_workers 0" in lines
    assert "# TYPE conveyor_queue_tasks gauge" in lines


def test_overview_page_is_escaped(client: TestClient, app: Conveyor) -> None:
    evil = "<script>alert(1)</script>"
    r = client.post("/api/tasks", json={"task": "reject", "options": {"queue": evil}})
    tid = r.json()["id"]
    app.drain()
    assert evil not in client.get("/").text
    page = client.get("/dead").text
    assert evil not in page and "&lt;script&gt;" in page
    assert f"href='/tasks/{tid}'" in page
    assert "1 dead letter<" in page


def test_openapi_describes_every_route(client: TestClient, app: Conveyor) -> None:
    doc = client.get("/api/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    described = {(path, method.upper()) for path, ops in doc["paths"].items()
                 for method in ops}
    routes = {(r.path, m) for r in create_app(app).routes  # type: ignore[attr-defined]
              for m in (r.methods or ()) if m != "HEAD" and r.path.startswith("/api")}
    assert described == routes


def test_no_secret_in_any_output(tmp_path: Path) -> None:
    app = make_app("redis://:hunter2-password@127.0.0.1:1/0")  # nothing listens on port 1
    try:
        with local_client(create_app(app), raise_server_exceptions=False) as client:
            outputs = [client.get(p) for p in ("/", "/metrics", "/api/queues", "/api/workers",
                                               "/api/dead", "/api/tasks/x")]
            outputs.append(client.post("/api/tasks", json={"task": "add", "args": [1, 2]}))
            outputs.append(client.post("/api/dead/retry", json={"all": True}))
            for r in outputs:
                assert r.status_code == 503, (r.request.url, r.text)
                assert "unavailable" in r.json()["error"]
                assert "hunter2" not in r.text and SECRET_KEY not in r.text
    finally:
        app.close()


def test_no_secret_key_in_outputs_of_a_working_app(client: TestClient, app: Conveyor) -> None:
    enqueue(client, "reject")
    app.drain()
    for path in ("/", "/metrics", "/api/queues", "/api/dead", "/api/openapi.json"):
        assert SECRET_KEY not in client.get(path).text


def test_progress_of_a_running_task(app: Conveyor) -> None:
    release = threading.Event()

    @app.task(name="slow", bind=True)
    def slow(ctx: Any) -> str:
        ctx.progress(1, 3, step="download")
        release.wait(10)
        return "done"

    with local_client(create_app(app)) as client:
        tid = enqueue(client, "slow")
        runner = threading.Thread(target=app.drain)
        runner.start()
        try:
            deadline = time.monotonic() + 10
            while (body := client.get(f"/api/tasks/{tid}").json())["state"] != "PROGRESS":
                assert time.monotonic() < deadline, body
                time.sleep(0.02)
            assert body == {"id": tid, "state": "PROGRESS", "ready": False,
                            "progress": {"current": 1, "total": 3, "step": "download"}}
        finally:
            release.set()
            runner.join()
        assert client.get(f"/api/tasks/{tid}", params={"wait": 5}).json() == {
            "id": tid, "state": "SUCCESS", "ready": True, "result": "done"}
