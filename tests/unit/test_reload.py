"""worker/reload.py without processes: what is watched, the child's command line, and the
one-line error when watchfiles is missing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conveyor import ConfigError
from conveyor.cli import cli
from conveyor.cli.worker import worker
from conveyor.worker.reload import INSTALL_HINT, wanted, watch_dirs, worker_command


@pytest.mark.parametrize(("path", "expected"), [
    ("/p/tasks.py", True),
    ("/p/pkg/sub/mod.py", True),
    ("/p/q.db", False),
    ("/p/q.db-wal", False),
    ("/p/q.db-shm", False),
    ("/p/notes.txt", False),
    ("/p/.venv/lib/python3.11/site-packages/x.py", False),
    ("/p/pkg/__pycache__/mod.cpython-311.pyc", False),
    ("/p/.git/hooks/pre-commit.py", False),
])
def test_only_python_sources_outside_caches_count(path: str, expected: bool) -> None:
    assert wanted(path) is expected


def test_watches_the_cwd_and_a_package_elsewhere(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    project, lib = tmp_path / "project", tmp_path / "lib"
    (lib / "reloadprobepkg").mkdir(parents=True)
    (lib / "reloadprobepkg" / "__init__.py").write_text("raise SystemExit('not imported')\n")
    project.mkdir()
    (project / "reloadprobemod.py").write_text("raise SystemExit('not imported')\n")
    monkeypatch.syspath_prepend(str(lib))
    monkeypatch.chdir(project)
    here = project.resolve()
    assert watch_dirs("reloadprobemod:app", str(project)) == [here]
    assert watch_dirs("reloadprobepkg.tasks:app", str(project)) == [
        here, (lib / "reloadprobepkg").resolve()]
    assert "reloadprobepkg" not in sys.modules
    with pytest.raises(ConfigError, match="module 'nosuchmodule_xyz' not found"):
        watch_dirs("nosuchmodule_xyz:app", str(project))
    with pytest.raises(ConfigError, match="bad APP"):
        watch_dirs("a:b:c", str(project))


def test_child_command_repeats_the_given_options_without_reload() -> None:
    ctx = worker.make_context("worker", ["tasks:app", "--reload", "-c", "2", "-q", "a,b",
                                         "-q", "c", "--no-scheduler", "--grace", "5"])
    cmd = worker_command(ctx)
    assert cmd[:5] == [sys.executable, "-m", "conveyor", "worker", "tasks:app"]
    args = cmd[5:]
    assert "--reload" not in args
    pairs = {(args[i], args[i + 1]) for i in range(len(args) - 1)}
    assert {("--concurrency", "2"), ("--queues", "a,b"), ("--queues", "c"),
            ("--grace", "5.0")} <= pairs
    assert "--no-scheduler" in args
    assert "--pool" not in args and "--log-level" not in args  # defaults are left out


def test_missing_watchfiles_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "watchfiles", None)  # import fails
    result = CliRunner().invoke(cli, ["worker", "tasks:app", "--reload"])
    assert result.exit_code == 2
    assert INSTALL_HINT in result.output
    assert "pip install conveyor[reload]" in result.output
    assert "Traceback" not in result.output
