"""Shared pieces of the end-to-end tests: a tasks module written into `tmp_path`, real worker
processes started with `python -m conveyor worker`, and polling helpers.

The producer side runs in the test process: the same `tasks.py` is executed here under the
module name `tasks` (without entering `sys.modules`, so tests never see each other's module),
which gives its tasks the same names (`tasks.<function>`) the worker registers.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest

from servers import fresh_postgres_url, fresh_redis_url

T = TypeVar("T")

# Every tasks module starts with this: the app on a SQLite file in tmp_path, and a ledger file
# that tasks append to (one line per run, pid first), so a test can count real executions.
PRELUDE = '''\
import os
import signal
import sys
import time

from conveyor import Conveyor

app = Conveyor({url!r}, lease={lease!r})
LEDGER = {ledger!r}


def record(*fields):
    """Append one line to the ledger; one O_APPEND write keeps lines whole across processes."""
    line = " ".join(str(f) for f in (os.getpid(), *fields)) + "\\n"
    fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def runs(tag):
    """How many ledger lines carry `tag` (a task deciding what to do on its n-th run)."""
    try:
        with open(LEDGER) as f:
            return sum(1 for line in f if tag in line.split()[1:])
    except FileNotFoundError:
        return 0

'''


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.05,
               what: str = "condition", details: Callable[[], str] | None = None) -> T:
    """Poll `predicate` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{details()}" if details is not None else ""
            pytest.fail(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(interval)


class Worker:
    """One `conveyor worker` process (in its own session, so its whole process group can be
    signalled or killed like a terminal or systemd would)."""

    def __init__(self, cwd: Path, index: int, args: tuple[str, ...], env: dict[str, str]) -> None:
        self.name = f"worker-{index}"
        self.stderr_path = cwd / f"{self.name}.err"
        self.stdout_path = cwd / f"{self.name}.out"
        self.args = args
        # Files, not pipes: they never fill up, and stay readable after the process ends.
        with open(self.stderr_path, "wb") as err, open(self.stdout_path, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "conveyor", "worker", "tasks:app", *args],
                cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def describe(self) -> str:
        state = "running" if self.proc.poll() is None else f"exited {self.proc.returncode}"
        return f"--- {self.name} ({' '.join(self.args)}; {state}) stderr:\n{self.log()}"

    def wait_for_log(self, pattern: str, timeout: float = 15.0, count: int = 1) -> str:
        """Wait until the regex `pattern` matches `count` times in stderr; return the log."""
        rx = re.compile(pattern)

        def found() -> str | None:
            text = self.log()
            if len(rx.findall(text)) >= count:
                return text
            if self.proc.poll() is not None:  # it will never appear
                pytest.fail(f"{self.name} exited ({self.proc.returncode}) before logging "
                            f"{pattern!r}\n{self.describe()}")
            return None
        return wait_until(found, timeout, what=f"{pattern!r} in {self.name}'s log",
                          details=self.describe)

    def wait_ready(self, timeout: float = 15.0) -> None:
        """The banner is out: the worker has loaded the app and is starting its pool."""
        self.wait_for_log(r"conveyor \S+ worker ", timeout)

    def signal(self, sig: int) -> None:
        """Signal the whole process group (supervisor and children), as a terminal does."""
        os.killpg(self.proc.pid, sig)

    def kill_group(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} did not exit within {timeout}s\n{self.describe()}")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait for a clean exit."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill_group()
            self.proc.wait(10)
        else:
            self.kill_group()  # children of a supervisor that died first


class Project:
    """A directory with a `tasks.py`, its queue (a SQLite file there, or a namespace of its own
    on Redis or PostgreSQL) and ledger, and the workers on it."""

    def __init__(self, root: Path, url: str | None = None) -> None:
        self.root = root
        self.db = root / "q.db"
        self.url = url or f"sqlite:///{self.db}"
        self.ledger_path = root / "ledger.txt"
        self.workers: list[Worker] = []
        self.modules: list[ModuleType] = []
        self._index = itertools.count(1)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        self.env["PYTHONUNBUFFERED"] = "1"

    def write_tasks(self, body: str, lease: float = 2) -> Any:
        """Write `tasks.py` (prelude + `body`) and return it executed here as the producer's
        module (named `tasks`, like the worker's, so task names match)."""
        source = PRELUDE.format(url=self.url, lease=lease, ledger=str(self.ledger_path))
        path = self.root / "tasks.py"
        path.write_text(source + textwrap.dedent(body))
        spec = importlib.util.spec_from_file_location("tasks", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        self.modules.append(module)
        return module

    def worker(self, *args: str, ready: bool = True, env: dict[str, str] | None = None,
               ) -> Worker:
        w = Worker(self.root, next(self._index), args, {**self.env, **(env or {})})
        self.workers.append(w)
        if ready:
            w.wait_ready()
        return w

    def ledger(self) -> list[list[str]]:
        """Lines of the ledger, split into fields (pid first)."""
        try:
            return [line.split() for line in self.ledger_path.read_text().splitlines()]
        except FileNotFoundError:
            return []

    def describe(self) -> str:
        return "\n".join([f"ledger: {self.ledger()}"] + [w.describe() for w in self.workers])

    def wait_until(self, predicate: Callable[[], T], what: str, timeout: float = 15.0) -> T:
        """`wait_until`, showing the ledger and every worker's log when it times out."""
        return wait_until(predicate, timeout, what=what, details=self.describe)

    def close(self) -> None:
        for w in self.workers:
            w.close()
        for m in self.modules:
            m.app.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"e2e_report_{report.when}", report)


@pytest.fixture
def backend_kind() -> str:
    """The backend a `project` uses; modules parametrize it to run on every backend."""
    return "sqlite"


@pytest.fixture
def backend_url(backend_kind: str) -> Iterator[str | None]:
    """None for SQLite (a file in the project), else a fresh Redis prefix or PostgreSQL schema
    (skipped locally, failed under CI, when the server is not there)."""
    if backend_kind == "sqlite":
        yield None
    elif backend_kind == "redis":
        yield from fresh_redis_url()
    elif backend_kind == "postgresql":
        yield from fresh_postgres_url()
    else:
        raise ValueError(f"unknown backend kind {backend_kind!r}")


@pytest.fixture
def project(tmp_path: Path, request: pytest.FixtureRequest,
            backend_url: str | None) -> Iterator[Project]:
    p = Project(tmp_path, backend_url)
    try:
        yield p
    finally:
        report = getattr(request.node, "e2e_report_call", None)
        if report is not None and report.failed:
            print(p.describe())  # shown under "Captured stdout teardown"
        p.close()
