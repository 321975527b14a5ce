"""The HTML pages through Starlette's TestClient: what each shows, escaping, the live
fragments, CSRF on form actions, and the login that trades the token for a cookie."""

from __future__ import annotations

import re
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.backends.base import WorkerInfo
from conveyor.dashboard import create_app

from .conftest import SECRET_KEY, TestClient, local_client, make_app

HTML = {"Accept": "text/html"}
EVIL = "<script>alert(1)</script>"


def csrf_of(page: str) -> str:
    found = re.search(r"name='csrf' value='([0-9a-f]+)'", page)
    assert found, page
    return found.group(1)


def form(client: TestClient, path: str, fields: dict[str, Any], **headers: str) -> Any:
    return client.post(path, data=fields, headers={**HTML, **headers}, follow_redirects=False)


def dead_letter(app: Conveyor, *args: Any) -> str:
    tid = str(app.tasks["boom"].delay(*args).id)
    app.drain()
    return tid


def test_every_page_renders_escaped_and_without_secrets(client: TestClient,
                                                        app: Conveyor) -> None:
    tid = dead_letter(app, EVIL)
    app.tasks["add"].apply_async((1, 2), queue=EVIL)
    for path in ("/", "/tasks", "/tasks?state=dead", f"/tasks/{tid}", "/dead", "/periodic",
                 f"/tasks?name={EVIL}"):
        r = client.get(path, headers=HTML)
        assert r.status_code == 200, (path, r.text)
        assert r.headers["content-type"].startswith("text/html")
        assert EVIL not in r.text, path
        assert SECRET_KEY not in r.text
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert r.headers["x-frame-options"] == "DENY"
    assert "&lt;script&gt;" in client.get("/dead").text
    assert "&lt;script&gt;" in client.get("/").text  # the queue's name


def test_overview_shows_depths_charts_and_workers(client: TestClient, app: Conveyor) -> None:
    app.tasks["add"].delay(1, 2)
    app.tasks["media.resize"].apply_async(("a.png",), countdown=600)
    app.backend.put_worker(WorkerInfo("n1:42:abc", {"node": "n1", "pid": 42, "pool": "thread",
                                                    "concurrency": 4, "queues": ["default"]}),
                           app.clock.now(), 30.0)
    page = client.get("/").text
    assert "<svg" in page and "aria-label='throughput'" in page
    assert "aria-label='failure rate'" in page
    assert re.search(r"<b>1</b><span>ready</span>", page)
    assert re.search(r"<b>1</b><span>scheduled</span>", page)
    assert "n1:42:abc" in page and "s ago" in page


def test_live_fragment_is_the_live_region_only(client: TestClient) -> None:
    for path in ("/", "/tasks", "/dead", "/periodic"):
        full = client.get(path).text
        part = client.get(path, params={"partial": "1"}).text
        assert "<html" not in part and "<header" not in part
        assert f"<div id='live' data-live='1'>{part}</div>" in full, path


def test_script_and_style_are_served_locally(client: TestClient) -> None:
    page = client.get("/").text
    assert "http://" not in page and "https://" not in page  # no CDN
    js = client.get("/static/dashboard.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "visibilitychange" in js.text and "partial" in js.text
    assert client.get("/static/dashboard.css").headers["content-type"].startswith("text/css")


def test_tasks_filters_search_and_detail(client: TestClient, app: Conveyor) -> None:
    failed = dead_letter(app, "bad input")
    ok = str(app.tasks["add"].delay(2, 3).id)
    app.drain()
    waiting = str(app.tasks["media.resize"].delay("b.png", width=7).id)
    page = client.get("/tasks", params={"state": "failure"}).text
    assert failed in page and ok not in page and waiting not in page
    page = client.get("/tasks", params={"queue": "media"}).text
    assert waiting in page and failed not in page
    page = client.get("/tasks", params={"name": "media.resize"}).text
    assert waiting in page and "width=7" in page
    page = client.get("/tasks", params={"state": "success", "queue": "media"}).text
    assert "notice error" in page and "cannot filter SUCCESS" in page

    r = client.get("/tasks", params={"id": f" {ok} "}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/tasks/{ok}"
    page = client.get(f"/tasks/{ok}").text
    assert "SUCCESS" in page and "<pre class='code'>5</pre>" in page
    page = client.get(f"/tasks/{failed}").text
    assert "ValueError" in page and "bad input" in page and "id='traceback'" in page
    assert "Traceback (most recent call last)" in page
    page = client.get(f"/tasks/{waiting}").text
    assert "Revoke" in page and "&quot;width&quot;: 7" in page and "Timeline" in page
    r = client.get("/tasks/nope", headers=HTML)
    assert r.status_code == 404 and "Nothing is stored about task" in r.text


def test_forms_need_the_csrf_token(client: TestClient, app: Conveyor) -> None:
    tid = dead_letter(app)
    good = csrf_of(client.get("/dead").text)
    for fields, headers, status in [
        ({"ids": tid}, {}, 403),  # no token
        ({"ids": tid, "csrf": "0" * 64}, {}, 403),  # a wrong one
        ({"ids": tid, "csrf": good}, {"Sec-Fetch-Site": "cross-site"}, 403),
        ({"ids": tid, "csrf": good}, {"Origin": "http://evil.example"}, 403),
    ]:
        r = form(client, "/dead/retry", fields, **headers)
        assert r.status_code == status, (fields, headers, r.text)
        assert "<html" in r.text
    r = client.post("/dead/retry", json={"ids": [tid], "csrf": good}, headers=HTML)
    assert r.status_code == 415
    other = local_client(create_app(app))  # another browser: its own cookie
    other.get("/dead")
    assert form(other, "/dead/retry", {"ids": tid, "csrf": good}).status_code == 403
    r = form(client, "/dead/retry", {"ids": tid, "csrf": good},
             **{"Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1:8470"})
    assert r.status_code == 303 and r.headers["location"] == "/dead?done=retried&n=1"
    assert "Put 1 dead letter(s) back" in client.get(r.headers["location"]).text


def test_dead_letters_retry_and_delete_in_bulk(client: TestClient, app: Conveyor) -> None:
    ids = [dead_letter(app, str(i)) for i in range(4)]
    token = csrf_of(client.get("/dead").text)
    r = form(client, "/dead/delete", {"ids": ids[:2], "csrf": token})
    assert r.headers["location"] == "/dead?done=deleted&n=2"
    page = client.get("/dead").text
    assert "2 dead letters" in page and ids[0] not in page and ids[3] in page
    assert form(client, "/dead/retry", {"csrf": token}).headers["location"] == "/dead?done=none"
    r = form(client, "/dead/retry", {"all": "1", "csrf": token})
    assert r.headers["location"] == "/dead?done=retried&n=2"
    assert "none: every task" in client.get("/dead").text
    tid = dead_letter(app)  # from the task's own page, back to it
    r = form(client, "/dead/retry", {"ids": tid, "back": "task", "csrf": token})
    assert r.headers["location"] == f"/tasks/{tid}?done=retried&n=1"


def test_revoke_from_the_detail_page(client: TestClient, app: Conveyor) -> None:
    tid = str(app.tasks["add"].apply_async((1, 2), countdown=600).id)
    page = client.get(f"/tasks/{tid}").text
    r = form(client, f"/tasks/{tid}/revoke", {"csrf": csrf_of(page)})
    assert r.status_code == 303 and r.headers["location"] == f"/tasks/{tid}?done=revoked"
    assert app.result(tid).state == "REVOKED"
    assert "Revoked: it will not run" in client.get(r.headers["location"]).text


def test_done_notices_are_fixed_texts(client: TestClient) -> None:
    page = client.get("/dead", params={"done": EVIL, "n": "<b>"}).text
    assert "class='notice" not in page and "alert" not in page
    assert client.get("/dead", params={"done": "deleted", "n": "x"}).text.count(
        "Deleted 0 dead letter(s).") == 1


def test_periodic_page(tmp_path: Any) -> None:
    app = make_app("memory://")

    @app.periodic(every=300)
    def cleanup() -> None:
        pass

    try:
        with local_client(create_app(app)) as client:
            page = client.get("/periodic").text
            assert "cleanup" in page and "not run yet" in page and "in " in page
    finally:
        app.close()


def test_login_trades_the_token_for_a_cookie(app: Conveyor) -> None:
    with TestClient(create_app(app, token="t0k"), base_url="http://dash.example") as client:
        r = client.get("/tasks?state=failure", headers=HTML, follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"] == "/login?next=%2Ftasks%3Fstate%3Dfailure"
        assert client.get("/", follow_redirects=False).status_code == 401  # not a browser
        page = client.get("/login?next=/tasks", headers=HTML)
        assert page.status_code == 200 and "name='token'" in page.text
        assert client.get("/static/dashboard.css").status_code == 200

        r = form(client, "/login", {"token": "wrong", "next": "/tasks"})
        assert r.status_code == 401 and "Wrong token." in r.text
        r = form(client, "/login", {"token": "t0k", "next": "/tasks"},
                 **{"Sec-Fetch-Site": "cross-site"})
        assert r.status_code == 403 and "conveyor_session" not in r.headers.get("set-cookie", "")
        r = form(client, "/login", {"token": "t0k", "next": "/tasks"})
        assert r.status_code == 303 and r.headers["location"] == "/tasks"
        cookie = r.headers["set-cookie"]
        assert cookie.startswith("conveyor_session=") and "t0k" not in cookie
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")

        assert client.get("/tasks", headers=HTML).status_code == 200
        assert client.get("/api/queues").status_code == 200  # the cookie works for the API
        r = client.post("/api/tasks", json={"task": "add", "args": [1, 2]})
        assert r.status_code == 201
        page = client.get("/").text
        assert "Log out" in page
        r = form(client, "/logout", {"csrf": csrf_of(page)})
        assert r.status_code == 303 and r.headers["location"] == "/login"
        client.cookies.delete("conveyor_session")  # what the browser does on that answer
        assert client.get("/api/queues").status_code == 401


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil",
                                    "evil"])
def test_login_goes_back_only_to_this_server(app: Conveyor, target: str) -> None:
    with TestClient(create_app(app, token="t0k")) as client:
        r = form(client, "/login", {"token": "t0k", "next": target})
        assert r.status_code == 303 and r.headers["location"] == "/"


def test_backend_down_gives_an_error_page_without_the_password() -> None:
    app = make_app("redis://:hunter2-password@127.0.0.1:1/0")
    try:
        with local_client(create_app(app)) as client:
            for path in ("/", "/tasks", "/dead", "/tasks/x"):
                r = client.get(path, headers=HTML)
                assert r.status_code == 503 and "<html" in r.text, path
                assert "backend unavailable" in r.text and "hunter2" not in r.text
    finally:
        app.close()
