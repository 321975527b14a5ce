"""The tasks view's API: `GET /api/tasks` (list by state, queue, name; paging) and
`GET /api/tasks/{id}/detail`, on every backend; bad parameters; undecodable bodies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from conveyor import Conveyor
from conveyor.backends.base import Message
from conveyor.dashboard import create_app

from .conftest import SECRET_KEY, backend_url, local_client, make_app


def enqueue(client: TestClient, task: str, args: list[Any] | None = None,
            **body: Any) -> str:
    r = client.post("/api/tasks", json={"task": task, "args": args or [], **body})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def listed(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    r = client.get("/api/tasks", params=params)
    assert r.status_code == 200, r.text
    return list(r.json()["tasks"])


def ids(client: TestClient, **params: Any) -> list[str]:
    return [t["id"] for t in listed(client, **params)]


@pytest.mark.parametrize("kind", ["memory", "sqlite", "redis", "postgresql"])
def test_list_and_detail_on_each_backend(kind: str, tmp_path: Path,
                                         request: pytest.FixtureRequest) -> None:
    app = make_app(backend_url(kind, tmp_path, request))
    try:
        with local_client(create_app(app)) as client:
            ok = enqueue(client, "add", [2, 3])
            bad = enqueue(client, "boom", kwargs={"message": "nope"})
            media = enqueue(client, "media.resize", ["a.png"], kwargs={"width": 7})
            urgent = enqueue(client, "add", [1, 1], options={"priority": 9})
            later = enqueue(client, "add", [4, 4], options={"countdown": 3600})

            # waiting: ready in claim order, scheduled apart
            assert ids(client, state="ready") == [urgent, ok, bad, media]
            assert ids(client, state="PENDING", queue="default") == [urgent, ok, bad]
            assert ids(client, state="ready", limit=2, offset=1) == [ok, bad]
            assert ids(client, state="scheduled") == [later]
            assert ids(client, state="ready", name="add") == [urgent, ok]
            assert ids(client, name="media.resize") == [media]
            assert ids(client) == [urgent, ok, bad, media, later]
            assert ids(client, limit=2, offset=3) == [media, later]
            row = listed(client, queue="media")[0]
            assert (row["task"], row["state"], row["queue"], row["args"], row["kwargs"],
                    row["attempts"]) == ("media.resize", "PENDING", "media", ["a.png"],
                                         {"width": 7}, 0)
            assert row["enqueued_at"] > 0 and row["decode_error"] is None

            detail = client.get(f"/api/tasks/{later}/detail").json()
            assert (detail["task"], detail["state"], detail["args"], detail["attempts"]) == (
                "add", "SCHEDULED", [4, 4], 0)
            assert detail["ready_at"] > detail["enqueued_at"] + 3000
            assert [e["event"] for e in detail["timeline"]] == ["enqueued", "due"]

            assert app.drain() == 4
            succeeded = listed(client, state="success")  # newest first
            assert [t["id"] for t in succeeded] == [media, ok, urgent]
            assert [t["task"] for t in succeeded] == ["media.resize", "add", "add"]
            assert client.get(f"/api/tasks/{ok}/detail").json()["task"] == "add"
            (dead,) = listed(client, state="dead")
            assert (dead["id"], dead["task"], dead["state"], dead["queue"]) == (
                bad, "boom", "FAILURE", "default")
            assert dead["dead_reason"] and "nope" in dead["dead_reason"]
            assert ids(client, state="failure") == [bad]
            assert ids(client, state="failure", queue="default") == [bad]
            assert ids(client, state="failure", name="boom") == [bad]
            assert ids(client, state="scheduled") == [later]
            assert ids(client, state="running") == []
            everything = ids(client)
            assert everything[:2] == [later, bad] and set(everything[2:]) == {ok, media, urgent}

            done = client.get(f"/api/tasks/{ok}/detail").json()
            assert (done["state"], done["result"], done["queue"]) == ("SUCCESS", 5, None)
            assert done["finished_at"] > 0 and "error" not in done
            assert [e["event"] for e in done["timeline"]] == ["finished: SUCCESS",
                                                              "result expires"]
            failed = client.get(f"/api/tasks/{bad}/detail").json()
            assert (failed["task"], failed["state"], failed["kwargs"], failed["attempts"]) == (
                "boom", "FAILURE", {"message": "nope"}, 1)
            assert failed["error"]["type"] == "ValueError"
            assert failed["error"]["message"] == "nope"
            assert "raise ValueError(message)" in failed["error"]["traceback"]
            assert failed["dead_reason"] == dead["dead_reason"]
            events = [e["event"] for e in failed["timeline"]]
            assert events[0] == "enqueued" and "finished: FAILURE" in events
            assert any(e.startswith("dead-lettered") for e in events)
            # the existing endpoint answers as before
            assert client.get(f"/api/tasks/{ok}").json() == {
                "id": ok, "state": "SUCCESS", "ready": True, "result": 5}
            r = client.get("/api/tasks/nobody/detail")
            assert r.status_code == 404 and "nobody" in r.json()["error"]
    finally:
        app.close()


def test_a_running_task(app: Conveyor, client: TestClient) -> None:
    tid = enqueue(client, "add", [1, 2])
    (held,) = app.backend.claim(None, "node-1:abc", app.clock.now(), 30.0, 1)
    assert held.id == tid
    (row,) = listed(client, state="running")
    assert (row["id"], row["state"], row["attempts"], row["worker"]) == (
        tid, "STARTED", 1, "node-1:abc")
    detail = client.get(f"/api/tasks/{tid}/detail").json()
    assert detail["state"] == "STARTED" and detail["lease_until"] > detail["enqueued_at"]
    assert detail["worker"] == "node-1:abc"
    assert detail["timeline"][-1]["event"] == "running (attempt 1) by node-1:abc: lease ends"
    assert ids(client, state="ready") == []


@pytest.mark.parametrize(("params", "message"), [
    ({"state": "nope"}, "'state' must be one of"),
    ({"state": "RETRY"}, "'state' must be one of"),
    ({"limit": "0"}, "'limit' must be between 1 and 500"),
    ({"limit": "501"}, "'limit' must be between 1 and 500"),
    ({"limit": "ten"}, "'limit' must be a whole number"),
    ({"offset": "-1"}, "'offset' must be >= 0"),
    ({"state": "success", "queue": "default"}, "'queue' cannot filter SUCCESS"),
    ({"state": "revoked", "queue": "default"}, "'queue' cannot filter REVOKED"),
])
def test_bad_parameters(client: TestClient, params: dict[str, str], message: str) -> None:
    r = client.get("/api/tasks", params=params)
    assert r.status_code == 400
    assert message in r.json()["error"], r.json()


def test_an_undecodable_body_is_shown_not_fatal(app: Conveyor, client: TestClient) -> None:
    app.backend.enqueue([Message("junk", "default", b"\x00not a message")], app.clock.now())
    good = enqueue(client, "add", [1, 2])
    rows = listed(client)
    assert [r["id"] for r in rows] == ["junk", good]
    assert rows[0]["task"] == "?" and rows[0]["decode_error"]
    assert ids(client, name="add") == [good]
    detail = client.get("/api/tasks/junk/detail").json()
    assert (detail["task"], detail["state"], detail["args"]) == ("?", "PENDING", [])
    assert detail["decode_error"] == rows[0]["decode_error"]


def test_filtering_by_name_is_bounded(app: Conveyor, client: TestClient,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from conveyor import inspect_tasks

    monkeypatch.setattr(inspect_tasks, "SCAN_MAX", 5)
    monkeypatch.setattr(inspect_tasks, "SCAN_PAGE", 2)
    for i in range(8):
        enqueue(client, "add", [i, i])
    last = enqueue(client, "boom")
    assert ids(client, name="add", limit=3) == ids(client, limit=3)
    assert ids(client, name="boom") == []  # past the bound: an empty page, not a full scan
    monkeypatch.setattr(inspect_tasks, "SCAN_MAX", 100)
    assert ids(client, name="boom") == [last]


def test_no_secret_key_in_task_outputs(app: Conveyor, client: TestClient) -> None:
    tid = enqueue(client, "reject")
    enqueue(client, "add", [1, 2])
    app.drain()
    for path in ("/api/tasks", "/api/tasks?state=dead", "/api/tasks?state=success",
                 f"/api/tasks/{tid}/detail"):
        r = client.get(path)
        assert r.status_code == 200 and SECRET_KEY not in r.text
