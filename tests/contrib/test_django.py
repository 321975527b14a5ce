"""conveyor.contrib.django: settings, task discovery, delay_on_commit, the django.tasks
backend, override_settings, and `manage.py conveyor_worker` (one short subprocess test)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

django = pytest.importorskip("django")
try:
    import django.tasks as tasks_framework  # noqa: F401  (Django >= 6)

    TASKS_APP: list[str] = []
except ImportError:
    pytest.importorskip("django_tasks")
    TASKS_APP = ["django_tasks"]

from django.conf import settings  # noqa: E402

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # the test app `djshop`

BACKEND = "conveyor.contrib.django.backend.ConveyorTaskBackend"

if not settings.configured:
    settings.configure(
        INSTALLED_APPS=["conveyor.contrib.django", *TASKS_APP, "djshop"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        CONVEYOR={"url": "memory://"},
        TASKS={"default": {"BACKEND": BACKEND, "QUEUES": []}},
        USE_TZ=True,
    )
    django.setup()

from django.core.management import call_command  # noqa: E402
from django.core.management.base import CommandError  # noqa: E402
from django.db import transaction  # noqa: E402
from django.test import override_settings  # noqa: E402
from djshop import tasks  # noqa: E402

from conveyor import Conveyor  # noqa: E402
from conveyor.contrib.django import DjangoConveyor, get_app, same_database  # noqa: E402


@pytest.fixture(autouse=True)
def empty_queue() -> None:
    get_app().drain()
    tasks.RAN.clear()


def test_settings_app_and_discovered_tasks() -> None:
    app = get_app()
    assert isinstance(app, DjangoConveyor) and app.url == "memory://"
    from conveyor.contrib import django as integration

    assert integration.app is app
    assert "djshop.tasks.add" in app.tasks
    assert "djshop.tasks.multiply" in app.tasks  # a django.tasks function, registered too
    r = tasks.add.delay(2, 3)
    assert app.drain() == 1 and r.get(timeout=1) == 5


def test_delay_on_commit_waits_for_the_commit() -> None:
    app = get_app()
    with transaction.atomic():
        r = tasks.record.delay_on_commit("kept")
        assert app.drain() == 0  # not before the commit
    assert app.drain() == 1
    assert tasks.RAN == ["kept"] and r.state == "SUCCESS"

    with pytest.raises(RuntimeError), transaction.atomic():
        tasks.record.delay_on_commit("rolled back")
        raise RuntimeError
    assert app.drain() == 0 and tasks.RAN == ["kept"]

    with pytest.raises(TypeError):  # checked at the call, not after the commit
        tasks.record.delay_on_commit(1, 2)


def test_django_tasks_backend_runs_on_conveyor() -> None:
    app = get_app()
    result = tasks.multiply.using(priority=5).enqueue(3, 4)
    assert result.status == "READY"
    assert app.drain() == 1
    result.refresh()
    assert result.status == "SUCCESSFUL" and result.return_value == 12

    again = tasks.multiply.get_result(result.id)  # by id, as another process would
    assert again.return_value == 12

    ctx = tasks.attempt.enqueue(7)
    failed = tasks.fail.enqueue()
    app.drain()
    ctx.refresh()
    failed.refresh()
    assert ctx.return_value == [1, 7]
    assert failed.status == "FAILED"
    assert failed.errors[0].exception_class_path == "builtins.ValueError"
    assert "bad input" in failed.errors[0].traceback


def test_override_settings_reconfigures_the_same_app() -> None:
    app = get_app()
    with override_settings(CONVEYOR={"url": "memory://", "eager": True}):
        assert get_app() is app and app.eager
        assert tasks.add.delay(1, 1).get() == 2  # ran inline
        with transaction.atomic():
            r = tasks.add.delay_on_commit(2, 2)
        assert r.get() == 4
    assert not app.eager and "djshop.tasks.add" in app.tasks


def test_same_database() -> None:
    db = {"NAME": "shop", "HOST": "", "PORT": ""}
    assert same_database("postgresql://u@localhost/shop", db)
    assert same_database("postgresql://u@127.0.0.1:5432/shop?schema=q", db)
    assert not same_database("postgresql://u@localhost/other", db)
    assert not same_database("postgresql://u@db.internal/shop", db)


def test_worker_command_rejects_what_conveyor_worker_rejects() -> None:
    with pytest.raises(CommandError, match="reload"):
        call_command("conveyor_worker", "--reload")
    with pytest.raises(CommandError):
        call_command("conveyor_worker", "--pool", "bogus")


def test_transactional_enqueue_on_djangos_postgres_connection() -> None:
    servers = pytest.importorskip("servers")  # tests/servers.py
    pytest.importorskip("psycopg")
    url_iter = servers.fresh_postgres_url()
    url = next(url_iter)
    from urllib.parse import urlsplit

    from django.db import connections

    parts = urlsplit(url)
    db = {"ENGINE": "django.db.backends.postgresql", "NAME": parts.path.lstrip("/"),
          "USER": parts.username or "", "PASSWORD": parts.password or "",
          "HOST": parts.hostname or "", "PORT": parts.port or 5432}
    pg = Conveyor(url)

    @pg.task(name="djshop.pg.add")
    def pg_add(a: int, b: int) -> int:
        return a + b

    from django.db.backends.postgresql.base import DatabaseWrapper

    from conveyor.contrib.django import apply_async_on_commit

    full = connections.configure_settings({"default": settings.DATABASES["default"], "pg": db})
    conn = DatabaseWrapper(full["pg"], "pg")
    connections["pg"] = conn
    try:
        with transaction.atomic(using="pg"):
            kept = apply_async_on_commit(pg_add, (1, 2), using="pg")
            assert conn.run_on_commit == []  # written in Django's transaction, not on_commit
        with pytest.raises(RuntimeError), transaction.atomic(using="pg"):
            lost = apply_async_on_commit(pg_add, (3, 4), using="pg")
            raise RuntimeError
        assert pg.drain() == 1
        assert kept.get(timeout=1) == 3 and lost.state == "PENDING"
    finally:
        conn.close()
        del connections["pg"]
        pg.close()
        for _ in url_iter:
            pass


def test_manage_py_conveyor_worker(tmp_path: Path) -> None:
    """A real worker process from manage.py; a second manage.py process enqueues and waits."""
    (tmp_path / "proj_settings.py").write_text(textwrap.dedent(f"""
        INSTALLED_APPS = ["conveyor.contrib.django", *{TASKS_APP!r}, "djshop"]
        DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3",
                                  "NAME": {str(tmp_path / "django.db")!r}}}}}
        CONVEYOR = {{"url": {"sqlite:///" + str(tmp_path / "q.db")!r}}}
        TASKS = {{"default": {{"BACKEND": {BACKEND!r}, "QUEUES": []}}}}
        USE_TZ = True
    """))
    (tmp_path / "manage.py").write_text(textwrap.dedent("""
        import os, sys
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj_settings")
        from django.core.management import execute_from_command_line
        execute_from_command_line(sys.argv)
    """))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(HERE), str(SRC)])}
    env.pop("CONVEYOR_URL", None)
    manage = [sys.executable, str(tmp_path / "manage.py")]
    worker = subprocess.Popen([*manage, "conveyor_worker", "--pool", "thread", "-c", "2",
                               "--log-level", "warning"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        code = ("from djshop.tasks import add, multiply\n"
                "print('add', add.delay(2, 3).get(timeout=20))\n"
                "r = multiply.enqueue(6, 7)\n"
                "import time\n"
                "deadline = time.time() + 20\n"
                "while r.status != 'SUCCESSFUL' and time.time() < deadline:\n"
                "    time.sleep(0.1); r.refresh()\n"
                "print('multiply', r.return_value)\n")
        done = subprocess.run([*manage, "shell", "-c", code], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "add 5" in done.stdout and "multiply 42" in done.stdout, done.stdout
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            out, _ = worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            out, _ = worker.communicate()
    assert worker.returncode == 0, out
