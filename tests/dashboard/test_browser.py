"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright, against a
real `conveyor dashboard` process and a real worker on a SQLite file. Screenshots go to
test-output/browser/ (ignored by git).

Skipped when Chromium or Playwright is missing (failed under CI=true); see browser.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from e2e.conftest import Project, Worker

from .browser import OUTPUT, Dashboard, launch, require_browser

TASKS = '''
import os

HERE = os.path.dirname(LEDGER)


@app.task(name="reports.build", queue="reports")
def build(n):
    """Fails until the test creates its flag file: a cause fixed while it sits dead."""
    record("build", n)
    if not os.path.exists(os.path.join(HERE, f"fixed-{n}")):
        raise RuntimeError(f"report {n}: the input file is missing")
    return {"report": n, "pages": 3}


@app.task(name="mail.send", queue="mail")
def send(to):
    return f"sent to {to}"
'''

TIMEOUT = 15_000  # ms, for the browser's waits


@dataclass
class Site:
    root: Path
    tasks: Any  # the tasks module, as the producer
    worker: Worker
    dashboard: Dashboard

    def url(self, path: str) -> str:
        return self.dashboard.url + path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch(p)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[Site]:
    """One worker and one dashboard for the module; each test uses task ids of its own."""
    root = tmp_path_factory.mktemp("site")
    project = Project(root)
    dashboard = None
    try:
        tasks = project.write_tasks(TASKS)
        worker = project.worker("--pool", "thread", "-c", "2")
        dashboard = Dashboard(root)
        yield Site(root, tasks, worker, dashboard)
    finally:
        if dashboard is not None:
            dashboard.stop()
        project.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", lambda m: errors.append(m.text)
          if m.type == "error" and "status of 401" not in m.text else None)  # wrong token
    try:
        yield pg
        assert errors == [], f"the page logged errors: {errors}"
    finally:
        OUTPUT.mkdir(parents=True, exist_ok=True)
        try:
            pg.screenshot(path=str(OUTPUT / f"{request.node.name}-last.png"), full_page=True)
        finally:
            context.close()


def shot(page: Any, name: str) -> None:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUTPUT / f"{name}.png"), full_page=True)


def expect(x: Any) -> Any:
    from playwright.sync_api import expect as pw_expect

    return pw_expect(x)


def failed(site: Site, n: int) -> str:
    """Enqueue report `n` (its flag file absent) and wait until it is dead; its id."""
    from conveyor import TaskFailed

    r = site.tasks.build.delay(n)
    with pytest.raises(TaskFailed):
        r.get(timeout=15)
    return str(r.id)


def test_overview_shows_queues_workers_charts_and_updates_live(site: Site, page: Any) -> None:
    site.tasks.send.delay("ada@example.com").get(timeout=15)
    page.goto(site.url("/"))
    expect(page.locator("h1")).to_have_text("Overview")
    live = page.locator("#live")
    expect(live).to_contain_text("reports")
    expect(live).to_contain_text("mail")
    workers = page.locator("h2:has-text('Workers') + table")
    expect(workers).to_contain_text("thread")
    expect(workers).to_contain_text(re.compile(r"\d+s ago"))
    expect(page.locator("svg[aria-label='throughput']")).to_have_count(1)
    expect(page.locator("svg[aria-label='failure rate']")).to_have_count(1)

    page.evaluate("window.notReloaded = true")
    site.tasks.send.apply_async(("later@example.com",), countdown=600)
    scheduled = page.locator(".card:has(span:text-is('scheduled')) b")
    expect(scheduled).to_have_text("1")  # within a refresh or two, without reloading
    assert page.evaluate("window.notReloaded") is True
    expect(page.locator("#live-status")).to_contain_text("live")
    shot(page, "overview")

    fetched: list[str] = []  # a hidden tab stops asking
    page.on("request", lambda r: fetched.append(r.url) if "partial=1" in r.url else None)
    page.evaluate("""() => {
        Object.defineProperty(document, "hidden", {get: () => true, configurable: true});
        document.dispatchEvent(new Event("visibilitychange"));
    }""")
    expect(page.locator("#live-status")).to_have_text("paused")
    fetched.clear()  # one may have started just before
    page.wait_for_timeout(2500)
    assert fetched == []


def test_failed_task_shows_its_traceback(site: Site, page: Any) -> None:
    task_id = failed(site, 1)
    page.goto(site.url("/tasks"))
    page.select_option("select[name=state]", "failure")
    page.click("form.filters button:text('Filter')")
    expect(page).to_have_url(re.compile(r"/tasks\?state=failure"))
    shot(page, "tasks")
    page.click(f"a:text-is('{task_id}')")
    expect(page.locator("h1")).to_have_text(f"Task {task_id}")
    expect(page.locator("dl.kv")).to_contain_text("FAILURE")
    expect(page.locator("dl.kv")).to_contain_text("reports.build")
    tb = page.locator("#traceback")
    expect(tb).to_contain_text("Traceback (most recent call last)")
    expect(tb).to_contain_text("RuntimeError: report 1: the input file is missing")
    expect(page.locator("#live")).to_contain_text('"args"')
    shot(page, "failed-task")


def test_retry_a_dead_letter_whose_cause_is_fixed(site: Site, page: Any) -> None:
    task_id = failed(site, 2)
    (site.root / "fixed-2").touch()
    page.goto(site.url("/dead"))
    page.check(f"input[name=ids][value='{task_id}']")
    page.click("button:text-is('Retry selected')")
    expect(page.locator(".notice")).to_have_text("Put 1 dead letter(s) back in their queue.")
    expect(page.locator(f"input[name=ids][value='{task_id}']")).to_have_count(0)
    page.goto(site.url(f"/tasks/{task_id}"))
    expect(page.locator("dl.kv")).to_contain_text("SUCCESS")  # live update if not yet done
    expect(page.locator("#live")).to_contain_text('"pages": 3')
    assert site.tasks.app.result(task_id).get(timeout=5) == {"report": 2, "pages": 3}
    shot(page, "retried-task")


def test_delete_dead_letters_in_bulk(site: Site, page: Any) -> None:
    ids = [failed(site, 3), failed(site, 4)]
    page.goto(site.url("/dead"))
    for i in ids:
        page.check(f"input[name=ids][value='{i}']")
    page.once("dialog", lambda d: d.accept())  # "Delete the selected ...?"
    page.click("button:text-is('Delete selected')")
    expect(page.locator(".notice")).to_have_text("Deleted 2 dead letter(s).")
    for i in ids:
        expect(page.locator(f"input[name=ids][value='{i}']")).to_have_count(0)


def test_login_with_a_token(site: Site, page: Any) -> None:
    dashboard = Dashboard(site.root, token="correct-horse")
    try:
        base = dashboard.url
        page.goto(base + "/tasks?state=failure")
        expect(page).to_have_url(re.compile(r"/login\?next="))
        page.fill("input[name=token]", "wrong")
        page.click("button:text-is('Log in')")
        expect(page.locator(".notice.error")).to_have_text("Wrong token.")
        shot(page, "login")
        page.fill("input[name=token]", "correct-horse")
        page.click("button:text-is('Log in')")
        expect(page).to_have_url(base + "/tasks?state=failure")
        expect(page.locator("h1")).to_have_text("Tasks")

        (session,) = [c for c in page.context.cookies() if c["name"] == "conveyor_session"]
        assert session["httpOnly"] and session["sameSite"] == "Strict"
        assert "correct-horse" not in session["value"]
        assert page.request.get(base + "/api/queues").status == 200  # the cookie, no header
        assert httpx.get(base + "/api/queues").status_code == 401  # Bearer rules unchanged
        auth = {"Authorization": "Bearer correct-horse"}
        assert httpx.get(base + "/api/queues", headers=auth).status_code == 200

        page.click("button:text-is('Log out')")
        expect(page).to_have_url(re.compile(r"/login$"))
        page.goto(base + "/")
        expect(page).to_have_url(re.compile(r"/login\?next=%2F$"))
    finally:
        dashboard.stop()
    assert "correct-horse" not in dashboard.log()
