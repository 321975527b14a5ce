"""The command line as a user runs it: `python -m conveyor ...` in a subprocess, against a
tasks module and a SQLite file in a temporary directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from servers import ON_EVERY_SERVER_BACKEND

TASKS = textwrap.dedent("""
    from conveyor import Conveyor

    app = Conveyor()
    not_an_app = 42

    @app.task
    def add(a, b):
        return a + b

    @app.task(queue="media", retries=2, timeout=30)
    def echo(*args, **kwargs):
        return {"args": list(args), "kwargs": kwargs}

    @app.task
    def boom(message="bad"):
        raise ValueError(message)

    @app.task(store_result=False)
    def quiet():
        pass
""")

pytestmark = ON_EVERY_SERVER_BACKEND

COMMANDS = ["worker", "status", "tasks", "enqueue", "result", "dead", "purge", "periodic",
            "migrate"]


class CliProject:
    """A directory holding `tasks.py` and its SQLite queue, and a way to run the CLI there."""

    def __init__(self, root: Path, url: str | None = None) -> None:
        self.root = root
        (root / "tasks.py").write_text(TASKS)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        self.env["CONVEYOR_URL"] = url or f"sqlite:///{root / 'queue.db'}"
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p)

    def run(self, *args: str, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "conveyor", *args], cwd=self.root,
                              env=env or self.env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout)

    def ok(self, *args: str) -> str:
        proc = self.run(*args)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc.stdout

    def drain(self) -> None:
        """Run every ready task, as a worker would, in a helper process."""
        subprocess.run([sys.executable, "-c", "import tasks; tasks.app.drain()"], cwd=self.root,
                       env=self.env, check=True, capture_output=True, timeout=60)

    def queue_row(self, queue: str) -> tuple[int, int, int]:
        """(ready, scheduled, running) of `queue`, read from `conveyor status`."""
        for line in self.ok("status", "tasks").splitlines():
            cells = line.split()
            if cells and cells[0] == queue:
                return int(cells[1]), int(cells[2]), int(cells[3])
        raise AssertionError(f"queue {queue} not in status")


@pytest.fixture
def cli(tmp_path: Path, backend_url: str | None) -> CliProject:
    return CliProject(tmp_path, backend_url)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int) -> str:
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


# --- help and APP loading -------------------------------------------------------------------

def test_top_level_help_lists_every_command(cli: CliProject) -> None:
    out = cli.ok("--help")
    for command in COMMANDS:
        assert f"  {command} " in out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(cli: CliProject, command: str) -> None:
    out = cli.ok(command, "--help")
    assert out.startswith(f"Usage: conveyor {command} ")
    assert "APP" in out


def test_console_script_matches_python_m(cli: CliProject) -> None:
    script = Path(sys.executable).parent / "conveyor"
    if not script.exists():
        pytest.skip("the console script is not installed next to this interpreter")
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out == cli.ok("--version")
    assert "conveyor" in out


@pytest.mark.parametrize(("app_path", "words"), [
    ("no_such_module", "not found"),
    ("tasks:missing", "no attribute"),
    ("tasks:not_an_app", "not a Conveyor"),
])
def test_bad_app_is_one_line_and_exit_2(cli: CliProject, app_path: str, words: str) -> None:
    line = assert_one_line_error(cli.run("status", app_path), 2)
    assert app_path in line and words in line


def test_config_error_is_one_line_and_exit_2(cli: CliProject) -> None:
    env = dict(cli.env, CONVEYOR_URL="nosuch://somewhere")
    line = assert_one_line_error(cli.run("tasks", "tasks", env=env), 2)
    assert "nosuch://" in line and "sqlite://" in line


# --- tasks, enqueue, status, result ----------------------------------------------------------

def test_tasks_lists_the_registry(cli: CliProject) -> None:
    lines = cli.ok("tasks", "tasks").splitlines()
    assert lines[0].split()[:5] == ["name", "queue", "priority", "retries", "timeout"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {"tasks.add", "tasks.boom", "tasks.echo", "tasks.quiet"}
    assert rows["tasks.quiet"][-1] == "store_result=False"
    assert rows["tasks.echo"][1:5] == ["media", "0", "2", "30s"]
    assert rows["tasks.add"][1] == "default"


def test_enqueue_reads_json_and_plain_args(cli: CliProject) -> None:
    task_id = cli.ok("enqueue", "tasks", "tasks.echo", "2", "word", '"2"', "[1, 2]", "-5",
                         "--kwargs", '{"flag": true, "n": null}').strip()
    assert len(task_id) >= 16 and " " not in task_id
    assert cli.queue_row("media") == (1, 0, 0)
    cli.drain()
    out = cli.ok("result", "tasks", task_id)
    assert "SUCCESS" in out
    value = json.loads(out.split("result:", 1)[1])
    assert value == {"args": [2, "word", "2", [1, 2], -5], "kwargs": {"flag": True, "n": None}}


def test_enqueue_queue_and_priority_options(cli: CliProject) -> None:
    cli.ok("enqueue", "tasks", "tasks.add", "1", "2", "--queue", "other", "--priority", "5")
    assert cli.queue_row("other") == (1, 0, 0)
    assert cli.queue_row("default") == (0, 0, 0)


def test_an_unambiguous_short_task_name_is_enough(cli: CliProject) -> None:
    task_id = cli.ok("enqueue", "tasks", "add", "1", "2").strip()
    assert cli.queue_row("default") == (1, 0, 0)
    cli.drain()
    assert "result: 3" in cli.ok("result", "tasks", task_id)


def test_countdown_shows_as_scheduled(cli: CliProject) -> None:
    task_id = cli.ok("enqueue", "tasks", "tasks.add", "1", "2", "--countdown", "3600").strip()
    cli.ok("enqueue", "tasks", "tasks.add", "3", "4")
    assert cli.queue_row("default") == (1, 1, 0)
    assert "state: SCHEDULED" in cli.ok("result", "tasks", task_id)


@pytest.mark.parametrize(("args", "words"), [
    (["tasks.nope"], "unknown task"),
    (["ad", "1", "2"], "did you mean 'tasks.add'"),
    (["tasks.add", "1"], "missing a required argument"),
    (["tasks.add", "1", "2", "--kwargs", "[1]"], "JSON object"),
    (["tasks.add", "1", "2", "--kwargs", "{nope"], "not valid JSON"),
    (["tasks.add", "1", "--bogus"], "no such option"),
    (["tasks.add", "1", "2", "--timeout", "5"], "only applies with --wait"),
    (["tasks.quiet", "--wait"], "store_result=False"),
])
def test_enqueue_usage_errors_exit_2(cli: CliProject, args: list[str], words: str) -> None:
    line = assert_one_line_error(cli.run("enqueue", "tasks", *args), 2)
    assert words in line
    assert cli.queue_row("default") == (0, 0, 0)


def test_status_shows_queues_workers_and_dead_letters(cli: CliProject) -> None:
    out = cli.ok("status", "tasks")
    assert cli.env["CONVEYOR_URL"] in out  # the backend it looked at
    assert "workers: none" in out
    assert "dead letters: 0" in out
    assert cli.queue_row("media") == (0, 0, 0)  # a task's queue shows even when empty


def test_result_of_a_failed_task(cli: CliProject) -> None:
    task_id = cli.ok("enqueue", "tasks", "tasks.boom", "it broke").strip()
    pending = cli.ok("result", "tasks", task_id)
    assert "state: PENDING" in pending and "result:" not in pending
    cli.drain()
    for extra in ([], ["--wait", "--timeout", "10"]):
        proc = cli.run("result", "tasks", task_id, *extra)
        assert proc.returncode == 1
        assert "state: FAILURE" in proc.stdout
        assert "ValueError: it broke" in proc.stderr
        assert "Remote traceback" in proc.stderr


def test_result_wait_times_out(cli: CliProject) -> None:
    proc = cli.run("result", "tasks", "no-such-id", "--wait", "--timeout", "0.2")
    line = assert_one_line_error(proc, 1)
    assert "no-such-id" in line and "0.2" in line


# --- dead letters and purge ------------------------------------------------------------------

def test_dead_list_retry_purge(cli: CliProject) -> None:
    assert cli.ok("dead", "tasks").strip() == "no dead letters"
    first = cli.ok("enqueue", "tasks", "tasks.boom", "one").strip()
    second = cli.ok("enqueue", "tasks", "tasks.boom", "two").strip()
    cli.drain()

    listing = cli.ok("dead", "tasks")
    assert listing == cli.ok("dead", "tasks", "list")
    header, *rows = listing.strip().splitlines()
    assert header.split() == ["id", "task", "attempts", "died", "reason"]
    assert [r.split()[:3] for r in rows] == [[first, "tasks.boom", "1"],
                                             [second, "tasks.boom", "1"]]
    assert "ValueError: one" in rows[0]
    assert '["two"]' in cli.ok("dead", "tasks", "list", "--verbose")
    assert "dead letters: 2" in cli.ok("status", "tasks")

    assert "requeued 1" in cli.ok("dead", "tasks", "retry", first)
    assert cli.queue_row("default") == (1, 0, 0)
    assert "state: PENDING" in cli.ok("result", "tasks", first)
    assert cli.run("dead", "tasks", "retry").returncode == 2
    missing = cli.run("dead", "tasks", "retry", "no-such-id")
    assert missing.returncode == 1 and "no-such-id" in missing.stderr

    cli.drain()  # fails again
    assert "requeued 2" in cli.ok("dead", "tasks", "retry", "--all")
    cli.drain()
    assert "deleted 2" in cli.ok("dead", "tasks", "purge")
    assert cli.ok("dead", "tasks").strip() == "no dead letters"


def test_purge_without_a_terminal_purges_as_told(cli: CliProject) -> None:
    cli.ok("enqueue", "tasks", "tasks.add", "1", "2")
    cli.ok("enqueue", "tasks", "tasks.echo")
    cli.ok("enqueue", "tasks", "tasks.echo")
    assert "purged 2" in cli.ok("purge", "tasks", "-q", "media")
    assert cli.queue_row("media") == (0, 0, 0)
    assert cli.queue_row("default") == (1, 0, 0)
    assert "purged 1" in cli.ok("purge", "tasks", "--force")
    assert cli.queue_row("default") == (0, 0, 0)


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_purge_asks_on_a_terminal(cli: CliProject) -> None:
    import pty

    cli.ok("enqueue", "tasks", "tasks.add", "1", "2")
    for answer, code, left in ((b"n\n", 1, 1), (b"y\n", 0, 0)):
        leader, follower = pty.openpty()
        try:
            proc = subprocess.Popen([sys.executable, "-m", "conveyor", "purge", "tasks"],
                                    cwd=cli.root, env=cli.env, stdin=follower,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            os.write(leader, answer)
            out, _ = proc.communicate(timeout=60)
        finally:
            os.close(leader)
            os.close(follower)
        assert proc.returncode == code
        assert "Delete 1 waiting task(s) from every queue?" in out
        assert cli.queue_row("default") == (left, 0, 0)


# --- periodic, migrate, worker ---------------------------------------------------------------

def test_periodic_is_honest(cli: CliProject) -> None:
    assert cli.ok("periodic", "tasks").strip() == "no periodic tasks"


def test_migrate_creates_the_schema(cli: CliProject, backend_kind: str) -> None:
    if backend_kind == "sqlite":
        assert not (cli.root / "queue.db").exists()
    out = cli.ok("migrate", "tasks")
    assert cli.env["CONVEYOR_URL"] in out
    if backend_kind == "sqlite":
        assert "schema is ready" in out
        assert (cli.root / "queue.db").exists()
    elif backend_kind == "postgresql":
        from conveyor.backends.postgres.schema import migrations

        names = [name for name, _ in migrations()]  # 0001_initial, ... (from scratch: all)
        assert f"applied {len(names)} migration(s): {', '.join(names)}" in out
        assert "schema is up to date" in cli.ok("migrate", "tasks")  # the second time
    cli.ok("enqueue", "tasks", "tasks.add", "1", "2")
    assert cli.queue_row("default") == (1, 0, 0)


@pytest.mark.parametrize(("flags", "words"), [
    (["--pool", "nonsense"], "nonsense"),
])
def test_worker_refuses_what_does_not_exist_yet(cli: CliProject, flags: list[str],
                                               words: str) -> None:
    proc = cli.run("worker", "tasks", *flags)
    assert proc.returncode == 2 and words in proc.stderr


def test_worker_runs_tasks_and_stops_on_sigterm(cli: CliProject) -> None:
    worker = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "worker", "tasks", "-c", "1", "--pool", "thread",
         "--grace", "10", "--log-level", "warning"],
        cwd=cli.root, env=cli.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        out = cli.ok("enqueue", "tasks", "tasks.add", "2", "3", "--wait", "--timeout", "60")
        assert out.strip() == "5"
        failed = cli.run("enqueue", "tasks", "tasks.boom", "oops", "--wait", "--timeout",
                             "60")
        assert failed.returncode == 1 and "ValueError: oops" in failed.stderr
        assert "workers: 1" in cli.ok("status", "tasks")
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert "workers: none" in cli.ok("status", "tasks")
