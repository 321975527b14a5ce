"""Acceptance checks of API.md (§1, §2, §3, §6, §7) made the way a user would make them.

Written only from /work/shared/API.md and what a Celery, RQ or Huey user would expect: a
`tasks.py` in a temporary directory, real workers started with `python -m conveyor worker` and
the installed `conveyor` script, producers in this process and in other processes, and every CLI
command of §6 with the argument forms API.md shows. In-process checks use `memory://` (drain and
eager mode). Nothing here imports from other test files. This module covers the core contract
on SQLite and memory://; each later feature (Redis and PostgreSQL, workflows, periodic tasks,
progress and revoke, limits, unique tasks, the pools, --reload, the dashboard) has its own
end-to-end module, most of them run on every backend.

Behaviour that disagrees with API.md (or would surprise a user of those libraries) is kept as
a strict xfail whose reason says what is wrong.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest

import conveyor
from conveyor import (
    BackendUnavailable,
    ConfigError,
    Conveyor,
    ConveyorError,
    Reject,
    Result,
    ResultGroup,
    Retry,
    SerializationError,
    TaskFailed,
    TaskTimeout,
)
from conveyor import TimeoutError as WaitTimeout

T = TypeVar("T")

HEX_ID = re.compile(r"^[0-9A-Za-z_-]{8,}$")
BANNER = re.compile(r"conveyor \S+ worker ")
SCRIPT = Path(sys.executable).with_name("conveyor")
LEASE = 2  # seconds; short so that the SIGKILL check stays quick

# The user's tasks module. {url}, {ledger} and {gates} are filled in per test module.
TASKS = '''\
import asyncio
import os
import time

from conveyor import Conveyor, Reject, Retry

app = Conveyor({url!r}, lease={lease!r})
LEDGER = {ledger!r}
GATES = {gates!r}


def record(tag, *fields):
    """One line per run: tag, wall time, pid, extra fields (one O_APPEND write per line)."""
    line = " ".join(str(f) for f in (tag, repr(time.time()), os.getpid(), *fields)) + "\\n"
    fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def runs(tag):
    try:
        with open(LEDGER) as f:
            return sum(1 for line in f if line.split()[0] == tag)
    except FileNotFoundError:
        return 0


def wait_gate(tag, limit=20.0):
    deadline = time.monotonic() + limit
    while not os.path.exists(os.path.join(GATES, tag)) and time.monotonic() < deadline:
        time.sleep(0.01)


@app.task
def add(a, b):
    return a + b


@app.task
def echo(*args, **kwargs):
    return {{"args": list(args), "kwargs": kwargs}}


@app.task
def boom(message):
    raise ValueError(message)


@app.task
def checked(x):
    if x < 0:
        raise ValueError(f"negative: {{x}}")
    return x


@app.task
def gated(tag):
    record(tag)
    wait_gate(tag)
    return tag


@app.task
def mark(tag):
    record(tag)
    return tag


@app.task(retries=1, retry_delay=1.0)
def fail_once(tag):
    record(tag)
    if runs(tag) == 1:
        raise IOError("first run fails")
    return runs(tag)


@app.task(retries=3, retry_delay=0.05, retry_on=(KeyError,))
def picky(tag, kind):
    record(tag)
    if kind == "key":
        raise KeyError("missing")
    raise ValueError("wrong value")


@app.task(bind=True, retries=2)
def ctx_info(ctx, tag):
    record(tag, ctx.attempt, ctx.retries_left)
    if ctx.attempt == 1:
        ctx.retry(delay=0.05)
    return {{"id": ctx.id, "name": ctx.name, "attempt": ctx.attempt,
            "retries_left": ctx.retries_left, "queue": ctx.queue,
            "cancelled": ctx.cancelled}}


@app.task(retries=2)
def explicit_retry(tag):
    record(tag)
    if runs(tag) < 2:
        raise Retry(delay=0.05)
    return runs(tag)


@app.task(retries=3)
def rejecting(tag):
    record(tag)
    raise Reject("bad input " + tag)


@app.task(timeout=0.5, retries=1, retry_delay=0.05)
def too_slow(tag):
    record(tag)
    time.sleep(10)


@app.task
def when_ok(tag):
    record(tag)
    if not os.path.exists(os.path.join(GATES, tag)):
        raise RuntimeError("not yet: " + tag)
    return "fixed " + tag


@app.task(name="shop.resize", queue="media", priority=5, retries=3, retry_delay=0.1,
          retry_backoff=True, retry_jitter=True, retry_on=(IOError,), timeout=30,
          store_result=True, bind=False)
def resize(image_id):
    return f"resized-{{image_id}}"


@app.task(queue="alpha")
def in_alpha(tag):
    record(tag)
    return tag


@app.task(queue="sig")
def sig_sleep(tag, seconds):
    """Sleeps only on its first run, so a rerun after a stop or a kill is quick."""
    record(tag)
    if runs(tag) == 1:
        time.sleep(seconds)
    return runs(tag)


@app.task(queue="sig")
def sig_pid():
    return os.getpid()


@app.task
def fanout(n):
    """Tasks enqueue tasks: the worker's own app is a producer too."""
    return [add.delay(i, i).id for i in range(n)]


@app.task(retries=1, retry_delay=0.05)
def always_retry():
    raise Retry()


@app.task(queue="solo")
def solo(tag):
    record(tag)
    return os.getpid()


@app.task
async def async_add(a, b):
    await asyncio.sleep(0.01)
    return a + b
'''

# A second module with its own queue file, whose Conveyor is not called `app`.
PARKED = '''\
from conveyor import Conveyor

queue_app = Conveyor({url!r})


@queue_app.task(queue="p1")
def work(x):
    return x
'''


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, what: str = "condition",
             details: Callable[[], str] | None = None) -> T:
    """Poll until `predicate()` is truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = "\n" + details() if details else ""
            pytest.fail(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(0.01)


def load_module(path: Path, name: str) -> ModuleType:
    """Execute a user module here under `name` (not put in sys.modules), so the task names
    match what a worker that imports `name` registers."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Worker:
    """One worker process, in its own session (signals can go to it or to its group)."""

    def __init__(self, root: Path, env: dict[str, str], name: str, args: list[str],
                 script: bool = False) -> None:
        self.name = name
        self.log_path = root / f"{name}.log"
        cmd = [str(SCRIPT)] if script else [sys.executable, "-m", "conveyor"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([*cmd, "worker", *args], cwd=root, env=env,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def describe(self) -> str:
        state = "running" if self.proc.poll() is None else f"exit {self.proc.returncode}"
        return f"--- {self.name} ({state}):\n{self.log()}"

    def wait_log(self, pattern: re.Pattern[str] | str, timeout: float = 15.0) -> None:
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern

        def seen() -> bool:
            if rx.search(self.log()):
                return True
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited before logging {rx.pattern!r}\n"
                            f"{self.describe()}")
            return False
        wait_for(seen, timeout, f"{rx.pattern!r} in {self.name}'s log", self.describe)

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} did not exit within {timeout}s\n{self.describe()}")

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass


class Project:
    """The user's directory: tasks.py, its SQLite file, the ledger, gates and workers."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"sqlite:///{root / 'queue.db'}"
        self.ledger_path = root / "ledger.txt"
        self.gates = root / "gates"
        self.gates.mkdir()
        (root / "tasks.py").write_text(TASKS.format(url=self.url, lease=LEASE,
                                                    ledger=str(self.ledger_path),
                                                    gates=str(self.gates)))
        (root / "parked.py").write_text(PARKED.format(url=f"sqlite:///{root / 'parked.db'}"))
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("CONVEYOR_") and k != "PYTHONPATH"}
        self.env["PYTHONUNBUFFERED"] = "1"
        self.tasks = load_module(root / "tasks.py", "tasks")
        self.workers: list[Worker] = []
        self.apps: list[Conveyor] = [self.tasks.app]
        self._count = 0

    def worker(self, *args: str, script: bool = False, ready: bool = True) -> Worker:
        self._count += 1
        w = Worker(self.root, self.env, f"worker-{self._count}", list(args), script)
        self.workers.append(w)
        if ready:
            w.wait_log(BANNER)
        return w

    def cli(self, *args: str, script: bool = False,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
        cmd = [str(SCRIPT)] if script else [sys.executable, "-m", "conveyor"]
        return subprocess.run([*cmd, *args], cwd=self.root, env=self.env, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, timeout=timeout)

    def ok(self, *args: str, script: bool = False) -> str:
        done = self.cli(*args, script=script)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout

    def open(self, tag: str) -> None:
        (self.gates / tag).touch()

    def ledger(self) -> list[list[str]]:
        try:
            return [line.split() for line in self.ledger_path.read_text().splitlines()]
        except FileNotFoundError:
            return []

    def runs(self, tag: str) -> list[list[str]]:
        return [fields for fields in self.ledger() if fields[0] == tag]

    def describe(self) -> str:
        return "\n".join([f"ledger: {self.ledger()}"] + [w.describe() for w in self.workers])

    def wait(self, predicate: Callable[[], T], what: str, timeout: float = 15.0) -> T:
        return wait_for(predicate, timeout, what, self.describe)

    def close(self) -> None:
        for w in self.workers:
            w.close()
        for a in self.apps:
            a.close()


_tag_counter = iter(range(1, 1_000_000))


def tag(prefix: str = "t") -> str:
    return f"{prefix}{next(_tag_counter)}"


@pytest.fixture(scope="module")
def proj(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """The project with its main worker: `python -m conveyor worker tasks:app -c 2 -q
    default,media` (several queues in the comma form)."""
    p = Project(tmp_path_factory.mktemp("contract"))
    try:
        p.worker("tasks:app", "-c", "2", "-q", "default,media")
        yield p
    finally:
        p.close()


@pytest.fixture(scope="module")
def tasks(proj: Project) -> ModuleType:
    return proj.tasks


@pytest.fixture
def mem() -> Iterator[Conveyor]:
    app = Conveyor("memory://")
    yield app
    app.close()


def dead_line(proj: Project, task_id: str) -> str:
    """The `conveyor dead APP list` line of one dead letter ('' when it is not there)."""
    out = proj.ok("dead", "tasks:app", "list")
    return next((line for line in out.splitlines() if task_id in line), "")


# --- §7 / §1: errors and configuration --------------------------------------------------------

def test_every_library_error_derives_from_conveyor_error() -> None:
    for exc in (ConfigError, SerializationError, WaitTimeout, TaskFailed, TaskTimeout,
                BackendUnavailable):
        assert issubclass(exc, ConveyorError), exc
        assert getattr(conveyor, exc.__name__) is exc
    # Control flow, not failures of the library.
    assert not issubclass(Retry, ConveyorError)
    assert not issubclass(Reject, ConveyorError)
    assert issubclass(ConveyorError, Exception)


@pytest.mark.parametrize("url", ["foo://somewhere", "mysql://u@h/db", "conveyor.db", "sqlite:"])
def test_unknown_scheme_is_a_config_error_naming_url_and_schemes(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        Conveyor(url)
    text = str(info.value)
    assert url in text
    assert "sqlite://" in text and "memory://" in text


def test_bad_sqlite_path_is_a_config_error_naming_url_and_schemes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'q.db'}"
    with pytest.raises(ConfigError) as info:
        Conveyor(url)
    assert str(tmp_path / "no" / "such" / "dir") in str(info.value)
    assert "sqlite://" in str(info.value) and "memory://" in str(info.value)


def test_default_url_is_conveyor_url_then_embedded_sqlite(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONVEYOR_URL", "memory://")
    app = Conveyor()
    assert app.url == "memory://"
    monkeypatch.delenv("CONVEYOR_URL")
    app = Conveyor()

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    add.delay(1, 2)
    assert (tmp_path / "conveyor.db").exists()  # sqlite:///conveyor.db, relative to the cwd
    assert app.drain() == 1
    app.close()


def test_backend_unavailable_names_the_url(tmp_path: Path) -> None:
    where = tmp_path / "disk"
    where.mkdir()
    url = f"sqlite:///{where / 'q.db'}"
    app = Conveyor(url)  # no I/O yet

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    shutil.rmtree(where)  # the disk went away before first use
    with pytest.raises(BackendUnavailable) as info:
        add.delay(1, 2)
    assert str(where / "q.db") in str(info.value)
    assert isinstance(info.value, ConveyorError)


def test_keyword_options_are_accepted(tmp_path: Path) -> None:
    app = Conveyor(f"sqlite:///{tmp_path / 'q.db'}", default_queue="jobs", result_ttl=60,
                   serializer="json", secret_key=None, lease=30)

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    r = add.delay(1, 2)
    assert app.drain(queues=["default"]) == 0  # it went to the default_queue, "jobs"
    assert app.drain(queues=["jobs"]) == 1
    assert r.get(timeout=5) == 3
    app.close()


# --- §2: tasks, in process ----------------------------------------------------------------------

def test_task_names_are_module_dot_function_or_name(proj: Project, tasks: ModuleType) -> None:
    assert tasks.add.name == "tasks.add"
    assert tasks.resize.name == "shop.resize"
    out = proj.ok("tasks", "tasks:app")
    for name in ("tasks.add", "tasks.echo", "shop.resize", "tasks.async_add"):
        assert name in out


def test_task_defined_in_a_function_is_named_module_dot_function(mem: Conveyor) -> None:
    @mem.task
    def add(a: int, b: int) -> int:
        return a + b

    assert add.name == f"{__name__}.add"


def test_direct_call_runs_here_and_enqueues_nothing(mem: Conveyor) -> None:
    @mem.task
    def add(a: int, b: int) -> int:
        return a + b

    assert add(1, 2) == 3
    assert mem.drain() == 0


def test_delay_returns_a_result_at_once(mem: Conveyor) -> None:
    @mem.task
    def add(a: int, b: int) -> int:
        return a + b

    r = add.delay(1, 2)
    assert isinstance(r, Result)
    assert isinstance(r.id, str) and r.id
    assert r.state == "PENDING" and not r.ready()
    r2 = add.apply_async(args=(3, 4), kwargs=None)
    r3 = add.apply_async((5,), {"b": 6}, task_id="my-own-id")
    assert r3.id == "my-own-id"
    assert len({r.id, r2.id, r3.id}) == 3
    assert mem.drain() == 3
    assert (r.get(timeout=1), r2.get(timeout=1), r3.get(timeout=1)) == (3, 7, 11)
    assert r.state == "SUCCESS" and r.ready()


def test_serialization_error_at_call_site_names_argument_nothing_enqueued(
        mem: Conveyor) -> None:
    @mem.task
    def add(a: Any, b: Any) -> Any:
        return a + b

    with pytest.raises(SerializationError) as info:
        add.delay(1, object())
    assert "'b'" in str(info.value)
    with pytest.raises(SerializationError) as info:
        add.apply_async((1,), {"b": {1, 2}})
    assert "'b'" in str(info.value)
    with pytest.raises(SerializationError) as info:
        add.delay(dt.datetime.now(), 1)
    assert "'a'" in str(info.value)
    with pytest.raises(SerializationError):
        add.map([(1, 2), (3, object())])  # all or nothing
    assert mem.drain() == 0


def test_drain_runs_everything_ready_including_retries_due_within_the_call(
        mem: Conveyor) -> None:
    seen: list[Any] = []

    @mem.task(retries=2, retry_delay=0.05)
    def flaky(x: int) -> int:
        seen.append(x)
        if len(seen) < 3:
            raise OSError("not yet")
        return x * 10

    @mem.task(queue="other")
    def elsewhere(x: int) -> int:
        return x

    r = flaky.delay(4)
    other = elsewhere.delay(1)
    assert mem.drain(queues=["default"]) == 3  # two failures and the success
    assert r.get(timeout=1) == 40
    assert other.state == "PENDING"
    assert mem.drain() == 1
    assert other.get(timeout=1) == 1
    assert mem.drain() == 0


def test_priority_larger_first_fifo_within_one_priority_in_memory(mem: Conveyor) -> None:
    order: list[str] = []

    @mem.task
    def note(name: str) -> None:
        order.append(name)

    for i, p in enumerate([0, 5, 1, 5, 10, 0, -3]):
        note.apply_async((f"{i}:{p}",), priority=p)
    mem.drain()
    assert order == ["4:10", "1:5", "3:5", "2:1", "0:0", "5:0", "6:-3"]


def test_countdown_eta_and_expires_in_memory(mem: Conveyor) -> None:
    @mem.task
    def add(a: int, b: int) -> int:
        return a + b

    later = add.apply_async((1, 2), countdown=0.3)
    at = add.apply_async((2, 2), eta=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.3))
    assert later.state == at.state == "SCHEDULED"
    assert mem.drain() == 0
    wait_for(lambda: (mem.drain(), later.ready() and at.ready())[1], 5, "countdown and eta")
    assert (later.get(timeout=1), at.get(timeout=1)) == (3, 4)

    gone = add.apply_async((1, 1), countdown=0.2, expires=0.05)
    gone_dt = add.apply_async((1, 1), expires=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    kept = add.apply_async((1, 1), expires=60)
    wait_for(lambda: (mem.drain(), gone.ready())[1], 5, "the expired task to be dropped")
    assert gone.state == gone_dt.state == "REVOKED"
    assert gone.ready()
    failed = gone.get(timeout=1, propagate=False)
    assert isinstance(failed, TaskFailed) and "expire" in str(failed).lower()
    with pytest.raises(TaskFailed):
        gone_dt.get(timeout=1)
    assert kept.get(timeout=1) == 2


def test_apply_async_retries_overrides_the_task_option(mem: Conveyor) -> None:
    calls: list[int] = []

    @mem.task(retries=3, retry_delay=0)
    def fails(n: int) -> None:
        calls.append(n)
        raise RuntimeError("always")

    fails.apply_async((1,), retries=0)
    fails.apply_async((2,), retries=1)
    mem.drain()
    assert calls.count(1) == 1 and calls.count(2) == 2


def test_result_ttl_drops_results() -> None:
    app = Conveyor("memory://", result_ttl=0.2)

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    r = add.delay(1, 2)
    app.drain()
    assert r.state == "SUCCESS"
    wait_for(lambda: r.state == "PENDING", 5, "the result to expire after result_ttl")


def test_eager_mode_runs_inline_and_still_serializes() -> None:
    app = Conveyor("memory://", eager=True)
    calls: list[str] = []

    @app.task
    def add(a: int, b: int) -> int:
        calls.append("add")
        return a + b

    @app.task(retries=2, retry_delay=30)
    def flaky() -> str:
        calls.append("flaky")
        if calls.count("flaky") < 3:
            raise OSError("again")
        return "ok"

    @app.task
    def boom() -> None:
        raise KeyError("nope")

    @app.task(retries=5)
    def rejecting() -> None:
        calls.append("reject")
        raise Reject("no")

    @app.task(bind=True, retries=4)
    def ctx(c: Any) -> list[Any]:
        return [c.id, c.name, c.attempt, c.retries_left, c.queue]

    r = add.delay(1, 2)
    assert calls == ["add"]  # ran inside delay()
    assert r.state == "SUCCESS" and r.ready() and r.get() == 3
    t0 = time.monotonic()
    assert flaky.delay().get() == "ok"  # retries run at once, without their delay
    assert time.monotonic() - t0 < 5
    failed = boom.delay()
    assert failed.state == "FAILURE"
    with pytest.raises(TaskFailed) as info:
        failed.get()
    assert info.value.exc_type == "KeyError"
    assert rejecting.delay().state == "FAILURE" and calls.count("reject") == 1
    r = ctx.apply_async(task_id="abc")
    assert r.get() == ["abc", ctx.name, 1, 4, "default"]
    with pytest.raises(SerializationError):
        add.delay(1, object())
    g = add.map([(1, 1), (2, 2)])
    assert g.get() == [2, 4] and g.ready() and g.completed_count() == 2


def test_serializers_msgpack_and_signed_pickle() -> None:
    app = Conveyor("memory://", serializer="msgpack")

    @app.task
    def length(data: bytes) -> int:
        return len(data)

    r = length.delay(b"\x00\x01\x02")
    app.drain()
    assert r.get(timeout=1) == 3

    # API.md says pickle is used "only when named explicitly"; conveyor also insists on a
    # secret_key for it (DESIGN.md: "pickle (opt-in, signed)").
    with pytest.raises(ConfigError):
        Conveyor("memory://", serializer="pickle")
    papp = Conveyor("memory://", serializer="pickle", secret_key="k")

    @papp.task
    def year(when: dt.datetime) -> dt.datetime:
        return when.replace(year=2000)

    r = year.delay(dt.datetime(2024, 5, 6))
    papp.drain()
    assert r.get(timeout=1) == dt.datetime(2000, 5, 6)
    with pytest.raises(ConfigError):
        Conveyor("memory://", serializer="yaml")


def test_secret_key_rejects_unsigned_and_tampered_messages(tmp_path: Path) -> None:
    """Producer and worker are two apps on one SQLite file; the worker drains in process."""
    url = f"sqlite:///{tmp_path / 'q.db'}"
    apps = [Conveyor(url, secret_key=key) for key in ("right", "right", "wrong", None)]
    worker, good, bad, unsigned = apps
    for a in apps:
        a.task(name="sig.add")(lambda a, b: a + b)
    ok = good.tasks["sig.add"].delay(1, 2)
    forged = bad.tasks["sig.add"].delay(1, 2)
    plain = unsigned.tasks["sig.add"].delay(1, 2)
    worker.drain()
    assert ok.get(timeout=5) == 3
    for r in (forged, plain):
        assert r.state == "FAILURE"
        with pytest.raises(TaskFailed):
            r.get(timeout=5)
    for a in apps:
        a.close()


def test_result_get_timeout_and_pending_for_unknown_ids(mem: Conveyor) -> None:
    @mem.task
    def add(a: int, b: int) -> int:
        return a + b

    r = add.delay(1, 2)  # nobody drains
    t0 = time.monotonic()
    with pytest.raises(WaitTimeout) as info:
        r.get(timeout=0.2)
    assert 0.15 <= time.monotonic() - t0 < 3
    assert isinstance(info.value, ConveyorError)
    assert mem.result("no-such-id").state == "PENDING"
    assert not mem.result("no-such-id").ready()
    assert mem.result(r.id).state == "PENDING"


def test_result_group_in_memory(mem: Conveyor) -> None:
    @mem.task
    def checked(x: int) -> int:
        if x < 0:
            raise ValueError("negative")
        return x

    g = checked.map([(3,), (-1,), (2,), (1,)])
    assert isinstance(g, ResultGroup)
    assert not g.ready() and g.completed_count() == 0
    with pytest.raises(WaitTimeout):
        g.get(timeout=0.1)
    members = list(g)
    assert len(members) == 4 and all(isinstance(r, Result) for r in members)
    mem.drain()
    assert g.ready()
    assert g.completed_count() == 3  # Celery: completed means successful
    with pytest.raises(TaskFailed):
        g.get(timeout=1)
    values = g.get(timeout=1, propagate=False)
    assert values[0] == 3 and values[2:] == [2, 1]
    assert isinstance(values[1], TaskFailed) and values[1].exc_type == "ValueError"
    assert [r.state for r in g] == ["SUCCESS", "FAILURE", "SUCCESS", "SUCCESS"]
    single = checked.map([5, 6])  # one-argument tasks may be mapped over plain values
    mem.drain()
    assert single.get(timeout=1) == [5, 6]


def test_async_tasks_and_async_producer_calls(mem: Conveyor) -> None:
    @mem.task
    async def aadd(a: int, b: int) -> int:
        await asyncio.sleep(0)
        return a + b

    assert aadd(1, 2) == 3

    async def produce() -> list[Result]:
        return [await aadd.adelay(1, 2), await aadd.aapply_async((3, 4), countdown=None)]

    made = asyncio.run(produce())
    mem.drain()

    async def collect() -> list[Any]:
        return [await r.aget(timeout=5) for r in made]

    assert asyncio.run(collect()) == [3, 7]


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited")
def test_drain_inside_an_event_loop_runs_async_tasks(mem: Conveyor) -> None:
    @mem.task
    async def aadd(a: int, b: int) -> int:
        return a + b

    async def scenario() -> Any:
        r = await aadd.adelay(1, 2)
        mem.drain()
        return await r.aget(timeout=5)

    assert asyncio.run(scenario()) == 3


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited")
def test_eager_async_task_inside_an_event_loop() -> None:
    app = Conveyor("memory://", eager=True)

    @app.task
    async def aadd(a: int, b: int) -> int:
        return a + b

    async def scenario() -> Any:
        return aadd.delay(1, 2).get()

    assert asyncio.run(scenario()) == 3


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited")
def test_direct_call_of_async_task_inside_an_event_loop(mem: Conveyor) -> None:
    @mem.task
    async def aadd(a: int, b: int) -> int:
        return a + b

    async def scenario() -> Any:
        try:
            value: Any = aadd(1, 2)
        except RuntimeError as exc:
            message = str(exc)
        else:
            return await value if asyncio.iscoroutine(value) else value
        gc.collect()  # the coroutine conveyor made and dropped warns now, inside this test
        pytest.fail(message)

    assert asyncio.run(scenario()) == 3


def test_unknown_task_and_undecodable_message_go_to_dead_letters_in_drain(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    worker, producer, other_format = Conveyor(url), Conveyor(url), Conveyor(
        url, serializer="msgpack")
    worker.task(name="known")(lambda: "ok")
    producer.task(name="ghost")(lambda: None)
    other_format.task(name="known")(lambda: "ok")
    ghost = producer.tasks["ghost"].delay()
    garbled = other_format.tasks["known"].delay()
    fine = producer.task(name="known")(lambda: "ok").delay()
    assert worker.drain() == 3  # the worker goes on
    assert fine.get(timeout=5) == "ok"
    for r in (ghost, garbled):
        assert r.state == "FAILURE"
        with pytest.raises(TaskFailed):
            r.get(timeout=5)
    for a in (worker, producer, other_format):
        a.close()


# --- §2 / §3 through a real worker (process pool) ---------------------------------------------

def test_round_trip_and_states_through_a_worker(proj: Project, tasks: ModuleType) -> None:
    assert tasks.add.delay(2, 3).get(timeout=15) == 5
    nowhere = tasks.add.apply_async((1, 1), queue="nowhere")  # no worker takes this queue
    assert nowhere.state == "PENDING" and not nowhere.ready()
    t = tag("gate")
    r = tasks.gated.delay(t)
    proj.wait(lambda: r.state == "STARTED", "STARTED while running")
    assert not r.ready()
    status = proj.ok("status", "tasks:app")
    row = next(line.split() for line in status.splitlines() if line.split()[:1] == ["default"])
    assert row[3] == "1", status  # queue, ready, scheduled, running
    proj.open(t)
    assert r.get(timeout=15) == t
    assert r.state == "SUCCESS" and r.ready()
    assert nowhere.state == "PENDING"


def test_result_from_another_process(proj: Project, tasks: ModuleType) -> None:
    r = tasks.echo.delay(1, "two", [3], x={"y": None})
    code = ("import json, sys, tasks; r = tasks.app.result(sys.argv[1]); "
            "print(json.dumps(r.get(timeout=15))); print(r.state)")
    done = subprocess.run([sys.executable, "-c", code, r.id], cwd=proj.root, env=proj.env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    value, state = done.stdout.splitlines()
    assert json.loads(value) == {"args": [1, "two", [3]], "kwargs": {"x": {"y": None}}}
    assert state == "SUCCESS"
    assert proj.tasks.app.result(r.id).get(timeout=5) == json.loads(value)


def test_countdown_and_eta_through_a_worker(proj: Project, tasks: ModuleType) -> None:
    t1, t2 = tag("cd"), tag("eta")
    start = time.time()
    r1 = tasks.mark.apply_async((t1,), countdown=1.5)
    r2 = tasks.mark.apply_async((t2,), eta=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))
    assert r1.state == "SCHEDULED"
    with pytest.raises(WaitTimeout):
        r1.get(timeout=0.3)
    assert r1.get(timeout=15) == t1 and r2.get(timeout=15) == t2
    ran1, ran2 = float(proj.runs(t1)[0][1]), float(proj.runs(t2)[0][1])
    assert ran1 >= start + 1.5 - 0.01
    assert ran2 >= start + 1.0 - 0.01


def test_expires_through_a_worker(proj: Project, tasks: ModuleType) -> None:
    t1, t2 = tag("exp"), tag("expdt")
    r1 = tasks.mark.apply_async((t1,), countdown=0.5, expires=0.2)
    r2 = tasks.mark.apply_async((t2,), countdown=0.5,
                                expires=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.2))
    for r in (r1, r2):
        failed = r.get(timeout=15, propagate=False)
        assert isinstance(failed, TaskFailed)
        assert r.state == "REVOKED" and r.ready()
        assert "expire" in (failed.exc_type + failed.exc_message).lower()
    assert proj.runs(t1) == [] and proj.runs(t2) == []


def test_retry_state_then_success(proj: Project, tasks: ModuleType) -> None:
    t = tag("retry")
    r = tasks.fail_once.delay(t)
    proj.wait(lambda: r.state == "RETRY", "the RETRY state between attempts")
    assert not r.ready()
    assert r.get(timeout=15) == 2
    assert r.state == "SUCCESS"


def test_task_failed_carries_the_remote_error(proj: Project, tasks: ModuleType) -> None:
    r = tasks.boom.delay("kaput 42")
    with pytest.raises(TaskFailed) as info:
        r.get(timeout=15)
    e = info.value
    assert e.exc_type == "ValueError"
    assert e.exc_message == "kaput 42"
    assert "ValueError: kaput 42" in e.traceback and "boom" in e.traceback
    assert "tasks.py" in e.traceback  # the worker's text
    assert "kaput 42" in str(e)
    assert r.state == "FAILURE" and r.ready()
    returned = r.get(timeout=1, propagate=False)
    assert isinstance(returned, TaskFailed) and returned.exc_type == "ValueError"


def test_retry_on_limits_which_errors_retry(proj: Project, tasks: ModuleType) -> None:
    tk, tv = tag("key"), tag("val")
    rk, rv = tasks.picky.delay(tk, "key"), tasks.picky.delay(tv, "value")
    assert rk.get(timeout=15, propagate=False).exc_type == "KeyError"
    assert rv.get(timeout=15, propagate=False).exc_type == "ValueError"
    assert len(proj.runs(tk)) == 4  # 1 + retries=3
    assert len(proj.runs(tv)) == 1  # not in retry_on: fails at once


def test_bound_context_and_retries(proj: Project, tasks: ModuleType) -> None:
    t = tag("ctx")
    r = tasks.ctx_info.delay(t)
    value = r.get(timeout=15)
    assert value == {"id": r.id, "name": "tasks.ctx_info", "attempt": 2, "retries_left": 1,
                     "queue": "default", "cancelled": False}
    assert [f[3:] for f in proj.runs(t)] == [["1", "2"], ["2", "1"]]
    t2 = tag("explicit")
    assert tasks.explicit_retry.delay(t2).get(timeout=15) == 2


def test_reject_dead_letters_at_once(proj: Project, tasks: ModuleType) -> None:
    t = tag("rej")
    r = tasks.rejecting.delay(t)
    failed = r.get(timeout=15, propagate=False)
    assert isinstance(failed, TaskFailed) and r.state == "FAILURE"
    assert len(proj.runs(t)) == 1  # retries=3 ignored
    assert f"bad input {t}" in dead_line(proj, r.id)


def test_timeout_stops_the_task_and_retries(proj: Project, tasks: ModuleType) -> None:
    t = tag("slow")
    t0 = time.monotonic()
    r = tasks.too_slow.delay(t)
    failed = r.get(timeout=20, propagate=False)
    assert isinstance(failed, TaskFailed) and failed.exc_type == "TaskTimeout"
    assert time.monotonic() - t0 < 9  # stopped, not run for its full 10 s
    assert len(proj.runs(t)) == 2  # retried once
    assert tasks.add.delay(1, 1).get(timeout=15) == 2  # the worker goes on


def test_unknown_and_undecodable_tasks_go_to_dead_letters(proj: Project,
                                                          tasks: ModuleType) -> None:
    producer = Conveyor(proj.url, lease=LEASE)
    signed = Conveyor(proj.url, lease=LEASE, secret_key="not the worker's")
    proj.apps += [producer, signed]
    ghost = producer.task(name="tasks.ghost")(lambda: None).delay()
    garbled = signed.task(name="tasks.add")(lambda a, b: a + b).delay(1, 2)
    for r in (ghost, garbled):
        with pytest.raises(TaskFailed):
            r.get(timeout=15)
        assert r.state == "FAILURE"
    assert "tasks.ghost" in dead_line(proj, ghost.id)
    assert re.search(r"regist", dead_line(proj, ghost.id))
    assert re.search(r"decod|sign", dead_line(proj, garbled.id))
    assert tasks.add.delay(2, 2).get(timeout=15) == 4  # the worker goes on


def test_retry_until_exhausted_leaves_a_readable_failure(proj: Project,
                                                         tasks: ModuleType) -> None:
    failed = tasks.always_retry.delay().get(timeout=15, propagate=False)
    assert isinstance(failed, TaskFailed)
    assert "(None, None)" not in failed.exc_message and "None" not in str(failed)


def test_tasks_enqueue_tasks_from_inside_a_worker(proj: Project, tasks: ModuleType) -> None:
    ids = tasks.fanout.delay(3).get(timeout=15)
    assert [tasks.app.result(i).get(timeout=15) for i in ids] == [0, 2, 4]


def test_map_result_group_through_a_worker(proj: Project, tasks: ModuleType) -> None:
    g = tasks.add.map([(i, i) for i in range(8)])
    assert isinstance(g, ResultGroup)
    assert g.get(timeout=15) == [2 * i for i in range(8)]
    assert g.ready() and g.completed_count() == 8
    assert len({r.id for r in g}) == 8
    mixed = tasks.checked.map([(1,), (-1,), (2,)])
    with pytest.raises(TaskFailed):
        mixed.get(timeout=15)
    wait_for(mixed.ready, 10, "every member to finish")
    assert mixed.completed_count() == 2


def test_async_task_and_named_task_through_a_worker(proj: Project, tasks: ModuleType) -> None:
    assert tasks.async_add.delay(2, 3).get(timeout=15) == 5
    assert tasks.resize.delay(7).get(timeout=15) == "resized-7"  # queue "media", name=


# --- §6: the command line ------------------------------------------------------------------------

def test_cli_enqueue_prints_the_id_or_with_wait_the_result(proj: Project) -> None:
    out = proj.ok("enqueue", "tasks:app", "tasks.add", "2", "3", "--wait")
    assert out.strip() == "5"
    out = proj.ok("enqueue", "tasks", "tasks.add", "2", "3")
    lines = out.splitlines()
    assert len(lines) == 1 and HEX_ID.match(lines[0]), out
    assert proj.tasks.app.result(lines[0]).get(timeout=15) == 5
    out = proj.ok("result", "tasks:app", lines[0], "--wait")
    assert "5" in out and "SUCCESS" in out


def test_cli_enqueue_reads_args_as_json_else_text(proj: Project) -> None:
    out = proj.ok("enqueue", "tasks:app", "tasks.echo", "2", '"2"', "hello", "[1, 2]",
                  '{"k": null}', "1.5", "true", "--kwargs", '{"b": 3}', "--wait")
    assert json.loads(out) == {"args": [2, "2", "hello", [1, 2], {"k": None}, 1.5, True],
                               "kwargs": {"b": 3}}


def test_cli_enqueue_non_json_words_are_text(proj: Project) -> None:
    out = proj.ok("enqueue", "tasks:app", "tasks.echo", "NaN", "Infinity", "--wait")
    assert json.loads(out)["args"] == ["NaN", "Infinity"]


def test_cli_enqueue_double_dash_ends_options(proj: Project) -> None:
    out = proj.ok("enqueue", "tasks:app", "tasks.echo", "--wait", "--", "-x")
    assert json.loads(out)["args"] == ["-x"]


def test_cli_enqueue_countdown_shows_scheduled(proj: Project) -> None:
    task_id = proj.ok("enqueue", "tasks:app", "tasks.add", "1", "1", "--countdown", "30").strip()
    assert proj.tasks.app.result(task_id).state == "SCHEDULED"
    out = proj.ok("result", "tasks:app", task_id)
    assert "SCHEDULED" in out
    status = proj.ok("status", "tasks:app")
    row = next(line.split() for line in status.splitlines() if line.split()[:1] == ["default"])
    assert int(row[2]) >= 1, status  # queue, ready, scheduled, running
    proj.ok("purge", "tasks:app", "-q", "default")  # it must not run later


def test_cli_failures_and_exit_codes(proj: Project) -> None:
    done = proj.cli("enqueue", "tasks:app", "tasks.boom", "oops", "--wait")
    assert done.returncode == 1
    assert "ValueError" in done.stderr and "oops" in done.stderr
    assert done.stdout.strip() == ""
    task_id = proj.ok("enqueue", "tasks:app", "tasks.boom", "again").strip()
    done = proj.cli("result", "tasks:app", task_id, "--wait")
    assert done.returncode == 1 and "FAILURE" in done.stdout and "ValueError" in done.stderr
    out = proj.ok("result", "tasks:app", "0123456789abcdef")
    assert "PENDING" in out
    for args in (["enqueue", "tasks:app", "tasks.nope"],           # unknown task
                 ["enqueue", "tasks:app", "tasks.add", "1"],        # arguments do not fit
                 ["enqueue", "tasks:app", "tasks.add", "1", "2", "--kwargs", "{oops"],
                 ["status", "no_such_module"],                       # bad APP
                 ["status", "tasks:nothing"],
                 ["status", "tasks:add"]):                           # not a Conveyor
        done = proj.cli(*args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr and done.stderr.strip(), args


def test_cli_status_tasks_periodic_migrate(proj: Project) -> None:
    out = proj.ok("status", "tasks:app")
    for word in ("default", "media", "ready", "scheduled", "running"):
        assert word in out
    assert re.search(r"workers?\W+\d", out), out
    assert re.search(r"dead\w*\W+\w*\W*\d", out), out
    assert "tasks.gated" in proj.ok("tasks", "tasks")
    proj.ok("periodic", "tasks:app")
    proj.ok("migrate", "tasks:app")


def test_cli_dead_list_retry_and_purge(proj: Project, tasks: ModuleType) -> None:
    t1, t2, t3 = tag("dead"), tag("dead"), tag("dead")
    r1, r2, r3 = (tasks.when_ok.delay(t) for t in (t1, t2, t3))
    for r in (r1, r2, r3):
        assert r.get(timeout=15, propagate=False).exc_type == "RuntimeError"
    listing = proj.ok("dead", "tasks:app")  # list is the default
    assert r1.id in listing and r2.id in listing and "not yet" in listing
    proj.open(t1)
    proj.ok("dead", "tasks:app", "retry", r1.id)
    assert r1.get(timeout=15) == f"fixed {t1}"
    assert r1.id not in proj.ok("dead", "tasks:app", "list")
    proj.ok("dead", "tasks:app", "purge")
    assert proj.ok("dead", "tasks:app", "list").count("\n") <= 1  # nothing, or one line saying so
    r4 = tasks.when_ok.delay(t2)
    assert r4.get(timeout=15, propagate=False).exc_type == "RuntimeError"
    proj.open(t2)
    proj.ok("dead", "tasks:app", "retry", "--all")
    assert r4.get(timeout=15) == f"fixed {t2}"
    done = proj.cli("dead", "tasks:app", "retry", "no-such-dead-letter")
    assert done.returncode != 0


def test_cli_purge_one_queue_then_all(proj: Project) -> None:
    parked = load_module(proj.root / "parked.py", "parked")
    proj.apps.append(parked.queue_app)
    for i in range(3):
        parked.work.delay(i)
    kept = [parked.work.apply_async((i,), queue="p2") for i in range(2)]

    def ready(queue: str) -> int:
        out = proj.ok("status", "parked")  # a module whose only Conveyor is not called app
        rows = [line.split() for line in out.splitlines() if line.split()[:1] == [queue]]
        return int(rows[0][1]) if rows else 0  # an empty, undeclared queue may not be listed

    assert (ready("p1"), ready("p2")) == (3, 2)
    out = proj.ok("purge", "parked:queue_app", "-q", "p1")
    assert "3" in out
    assert (ready("p1"), ready("p2")) == (0, 2)
    assert all(r.state == "PENDING" for r in kept)
    out = proj.ok("purge", "parked")
    assert "2" in out
    assert ready("p2") == 0


def test_python_m_conveyor_is_the_conveyor_script(proj: Project) -> None:
    if not SCRIPT.exists():
        pytest.skip("no installed conveyor script next to this interpreter")
    a = proj.ok("--help")
    b = proj.ok("--help", script=True)
    assert a == b
    for command in ("worker", "status", "tasks", "enqueue", "result", "dead", "purge",
                    "periodic", "migrate"):
        assert command in a
    assert proj.ok("tasks", "tasks:app") == proj.ok("tasks", "tasks:app", script=True)
    out = proj.ok("enqueue", "tasks:app", "tasks.add", "4", "4", "--wait", script=True)
    assert out.strip() == "8"


# --- §6: workers -----------------------------------------------------------------------------------

def test_worker_several_queues_and_priority_order(proj: Project, tasks: ModuleType) -> None:
    w = proj.worker("tasks:app", "-c", "1", "-q", "alpha,beta", "-q", "gamma")
    try:
        g = tag("pgate")
        blocker = tasks.gated.apply_async((g,), queue="alpha")
        proj.wait(lambda: blocker.state == "STARTED", "the blocker to start")
        base = tag("prio")
        results = []
        for i, p in enumerate([0, 5, 1, 5, 10, 0, -3]):
            name = f"{base}-{i}"
            if p == 10:  # one through the command line
                task_id = proj.ok("enqueue", "tasks:app", "tasks.in_alpha", name,
                                  "--priority", str(p)).strip()
                results.append(tasks.app.result(task_id))
            else:
                results.append(tasks.in_alpha.apply_async((name,), priority=p))
        other = [tasks.mark.apply_async((tag("q"),), queue=q) for q in ("beta", "gamma")]
        stranded = tasks.mark.apply_async((tag("q"),), queue="delta")
        proj.open(g)
        for r in results + other:
            r.get(timeout=15)
        order = [f[0] for f in proj.ledger() if f[0].startswith(base + "-")]
        assert order == [f"{base}-{i}" for i in (4, 1, 3, 2, 0, 5, 6)]
        assert stranded.state == "PENDING"
    finally:
        w.close()


def test_worker_defaults_installed_script_and_bare_module(proj: Project,
                                                          tasks: ModuleType) -> None:
    if not SCRIPT.exists():
        pytest.skip("no installed conveyor script next to this interpreter")
    w = proj.worker("tasks", script=True)  # no -c, no -q
    try:
        assert isinstance(tasks.solo.delay(tag("solo")).get(timeout=15), int)  # queue "solo"
        cpus = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                else os.cpu_count())
        row = proj.wait(lambda: next((line.split() for line in
                                      proj.ok("status", "tasks").splitlines()
                                      if str(w.proc.pid) in line.split()), None),
                        "the worker in `conveyor status`")
        assert str(cpus) in row  # -c defaults to the number of CPUs
        w.proc.send_signal(signal.SIGTERM)
        assert w.wait_exit(15) == 0
    finally:
        w.close()


def test_sigterm_finishes_the_running_task_takes_no_more_and_exits_0(
        proj: Project, tasks: ModuleType) -> None:
    w = proj.worker("tasks:app", "-c", "1", "-q", "sig")
    try:
        t1, t2 = tag("term"), tag("term")
        running = tasks.sig_sleep.delay(t1, 1.0)
        proj.wait(lambda: proj.runs(t1), "the task to start")
        waiting = tasks.sig_sleep.delay(t2, 0)
        w.proc.send_signal(signal.SIGTERM)  # `kill PID`: the supervisor only
        assert w.wait_exit(15) == 0
        assert running.state == "SUCCESS" and running.get(timeout=1) == 1
        assert waiting.state == "PENDING" and proj.runs(t2) == []  # left for another worker
    finally:
        w.close()
    w2 = proj.worker("tasks:app", "-c", "1", "-q", "sig")
    try:
        assert waiting.get(timeout=15) == 1
        os.killpg(w2.proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: the process group
        assert w2.wait_exit(15) == 0
    finally:
        w2.close()


def test_second_signal_stops_at_once_and_the_task_returns_to_the_queue(
        proj: Project, tasks: ModuleType) -> None:
    w = proj.worker("tasks:app", "-c", "1", "-q", "sig")
    t = tag("twice")
    try:
        r = tasks.sig_sleep.delay(t, 30)
        proj.wait(lambda: proj.runs(t), "the long task to start")
        os.killpg(w.proc.pid, signal.SIGINT)
        w.wait_log(r"stopping")
        t0 = time.monotonic()
        os.killpg(w.proc.pid, signal.SIGINT)
        w.wait_exit(10)
        assert time.monotonic() - t0 < 5
        assert r.state in ("PENDING", "RETRY")  # back in the queue, not failed
    finally:
        w.close()
    w2 = proj.worker("tasks:app", "-c", "1", "-q", "sig")
    try:
        assert r.get(timeout=15) == 2  # another worker ran it again
    finally:
        w2.close()


def test_sigkill_loses_nothing_the_task_runs_again_after_its_lease(
        proj: Project, tasks: ModuleType) -> None:
    w = proj.worker("tasks:app", "-c", "1", "-q", "sig")
    t = tag("kill")
    r = tasks.sig_sleep.delay(t, 30)
    try:
        proj.wait(lambda: proj.runs(t), "the task to start")
    finally:
        w.close()  # SIGKILL to the whole group
    w2 = proj.worker("tasks:app", "-c", "1", "-q", "sig")
    try:
        assert r.get(timeout=15) == 2
    finally:
        w2.close()


def test_a_task_longer_than_its_lease_runs_once_and_children_are_replaced(
        proj: Project, tasks: ModuleType) -> None:
    a = proj.worker("tasks:app", "-c", "1", "--max-tasks-per-child", "1", "-q", "sig",
                    ready=False)
    b = proj.worker("tasks:app", "-c", "1", "-q", "sig", ready=False)
    try:
        for w in (a, b):
            w.wait_log(BANNER)
        t = tag("long")
        assert tasks.sig_sleep.delay(t, 2.5 * LEASE).get(timeout=20) == 1
        assert len(proj.runs(t)) == 1  # the idle worker never took it back
        b.proc.send_signal(signal.SIGTERM)
        assert b.wait_exit(15) == 0
        pids = [tasks.sig_pid.delay().get(timeout=15) for _ in range(3)]
        assert len(set(pids)) == 3  # --max-tasks-per-child 1: a fresh child each time
    finally:
        a.close()
        b.close()


def test_thread_pool_worker(proj: Project, tasks: ModuleType) -> None:
    w = proj.worker("tasks:app", "--pool", "thread", "-c", "2", "-q", "threads")
    try:
        assert tasks.add.apply_async((20, 22), queue="threads").get(timeout=15) == 42
        failed = tasks.boom.apply_async(("in a thread",), queue="threads")
        assert failed.get(timeout=15, propagate=False).exc_message == "in a thread"
        t = tag("tgate")
        r = tasks.gated.apply_async((t,), queue="threads")
        proj.wait(lambda: r.state == "STARTED", "the gated task to start")
        w.proc.send_signal(signal.SIGTERM)
        w.wait_log(r"stopping")
        proj.open(t)
        assert w.wait_exit(15) == 0
        assert r.get(timeout=1) == t  # the running task finished before the exit
    finally:
        w.close()


def test_process_pool_refuses_memory_backend(tmp_path: Path) -> None:
    (tmp_path / "memapp.py").write_text("from conveyor import Conveyor\n"
                                         "app = Conveyor('memory://')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    done = subprocess.run([sys.executable, "-m", "conveyor", "worker", "memapp"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert "memory://" in done.stderr and "Traceback" not in done.stderr
