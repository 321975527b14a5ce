"""Regenerate docs/images/dashboard.png, the README's picture of the overview page.

    .venv/bin/python tests/dashboard/screenshot.py [--minutes 4] [--out docs/images/dashboard.png]

Runs a small shop for a few minutes, for real: two `conveyor worker` processes on a SQLite
file, a producer sending mail, reports (some fail, retry, and end as dead letters), image
resizes and card charges (some rejected), and a periodic clean-up; then starts
`conveyor dashboard` and takes the screenshot with headless Chromium (see browser.py). The
charts show the minutes it ran. Everything it starts is stopped by pid at the end.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: servers, e2e, dashboard

from dashboard.browser import Dashboard, launch, missing  # noqa: E402
from e2e.conftest import Project  # noqa: E402

TASKS = '''
import random
import time

from conveyor import Reject


@app.task(name="mail.send", queue="mail")
def send(to, template="welcome"):
    time.sleep(random.uniform(0.02, 0.2))
    return {"to": to, "template": template}


@app.task(name="reports.build", queue="reports", retries=2, retry_delay=1)
def build(report, quarter="q3"):
    time.sleep(random.uniform(0.1, 0.6))
    if random.random() < 0.25:
        raise ValueError(f"template {quarter!r} not found for report {report}")
    return {"report": report, "pages": random.randint(2, 40)}


@app.task(name="media.resize", queue="media")
def resize(image, width=800):
    time.sleep(random.uniform(0.5, 2.5))
    return {"image": image, "width": width}


@app.task(name="billing.charge", queue="default")
def charge(order, cents):
    time.sleep(random.uniform(0.05, 0.3))
    if random.random() < 0.08:
        raise Reject("card declined")
    return {"order": order, "charged": cents}


@app.periodic(every=30)
def cleanup():
    time.sleep(0.1)
'''


def produce(tasks: object, minutes: float, rng: random.Random) -> None:
    """A load that changes from minute to minute, so the charts have a shape."""
    t = tasks  # the producer's tasks module
    end = time.monotonic() + minutes * 60
    n = 0
    while time.monotonic() < end:
        minute = int((end - time.monotonic()) // 60)
        rate = (4, 9, 6, 12, 7)[minute % 5]  # tasks per second, roughly
        for _ in range(rate):
            n += 1
            kind = rng.random()
            if kind < 0.45:
                t.send.delay(f"user{n}@example.com")  # type: ignore[attr-defined]
            elif kind < 0.65:
                t.build.delay(n)  # type: ignore[attr-defined]
            elif kind < 0.8:
                t.resize.delay(f"img/{n}.jpg", width=rng.choice([320, 800, 1600]))  # type: ignore[attr-defined]
            else:
                t.charge.delay(f"A-{n}", rng.randint(500, 20000))  # type: ignore[attr-defined]
        time.sleep(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--out", type=Path,
                        default=HERE.parents[1] / "docs" / "images" / "dashboard.png")
    args = parser.parse_args()
    why = missing()
    if why is not None:
        print(f"cannot take the screenshot: {why}", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="conveyor-shop-") as tmp:
        root = Path(tmp)
        project = Project(root, f"sqlite:///{root / 'shop.db'}")
        dashboard = None
        try:
            tasks = project.write_tasks(TASKS)
            project.worker("--pool", "thread", "-c", "4", "-q", "default,mail,reports")
            project.worker("--pool", "thread", "-c", "2", "-q", "media,reports,default")
            produce(tasks, args.minutes, rng)
            for i in range(3):  # a few for later, and a backlog the workers are working on
                tasks.send.apply_async((f"later{i}@example.com",), countdown=3600)
            for i in range(12):
                tasks.resize.delay(f"img/batch-{i}.jpg")
            dashboard = Dashboard(root)
            with sync_playwright() as p:
                browser = launch(p)
                try:
                    page = browser.new_page(viewport={"width": 1280, "height": 800},
                                            device_scale_factor=1)
                    page.goto(dashboard.url + "/")
                    page.wait_for_selector("svg[aria-label='throughput']")
                    page.wait_for_timeout(2500)  # one live refresh: the status line fills in
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(args.out), full_page=True)
                finally:
                    browser.close()
        finally:
            if dashboard is not None:
                dashboard.stop()
            project.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
