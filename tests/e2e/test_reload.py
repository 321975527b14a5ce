"""`conveyor worker APP --reload` end to end on SQLite: a real reloader process watching a real
`tasks.py`, edited by the test; the worker it runs is restarted on each change."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Project, Worker  # the fixtures of tests/e2e/conftest.py

pytest.importorskip("watchfiles")
pytestmark = pytest.mark.timeout(60)

VERSION = '''
@app.task
def version():
    return {tag!r}


@app.task
def nap(seconds):
    time.sleep(seconds)
    record("nap")
    return "rested"
'''

BANNER = r"conveyor \S+ worker "
RESTART = r"tasks\.py changed: restarting the worker"


def edit(project: Project, tag: str) -> None:
    """Rewrite tasks.py as the worker will see it (the producer keeps its first copy: the
    task names do not change)."""
    path = project.root / "tasks.py"
    path.write_text(path.read_text().replace(_previous(path), repr(tag)))


def _previous(path: Path) -> str:
    match = re.search(r"return ('v\d+')", path.read_text())
    assert match is not None
    return match.group(1)


def worker_pids(w: Worker) -> list[int]:
    return [int(pid) for pid in re.findall(r"worker started \(pid (\d+)\)", w.log())]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_reload_restarts_on_edit_survives_a_syntax_error_and_stops_cleanly(
        project: Project) -> None:
    tasks = project.write_tasks(VERSION.format(tag="v1"))
    w = project.worker("--reload", "-c", "1", "--grace", "5")
    try:
        assert tasks.version.delay().get(timeout=15) == "v1"

        edit(project, "v2")
        w.wait_for_log(RESTART)
        w.wait_for_log(BANNER, count=2)
        assert tasks.version.delay().get(timeout=15) == "v2"

        # A syntax error: the worker dies at start-up, the reloader stays and waits.
        source = (project.root / "tasks.py").read_text()
        (project.root / "tasks.py").write_text(source + "\ndef broken(:\n")
        w.wait_for_log(RESTART, count=2)
        w.wait_for_log(r"the worker exited with code \d+: waiting for a file to change")
        assert w.proc.poll() is None
        # The fix brings it back.
        (project.root / "tasks.py").write_text(source.replace("'v2'", "'v3'"))
        w.wait_for_log(BANNER, count=3)
        assert tasks.version.delay().get(timeout=15) == "v3"

        children = worker_pids(w)
        assert len(children) >= 4  # v1, v2, the broken one, v3
        assert not any(alive(pid) for pid in children[:-1])
        assert alive(children[-1])
        # SIGTERM to the reloader alone (as `kill PID` or docker stop would): it stops the
        # worker and exits 0, leaving no process behind.
        w.proc.send_signal(signal.SIGTERM)
        assert w.wait(15) == 0
        assert not alive(children[-1])
        assert "reloader stopped" in w.log()
    finally:
        for pid in worker_pids(w):  # never leave a worker behind, even when failing
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def test_a_running_task_finishes_across_a_reload_and_ctrl_c_stops_all(project: Project) -> None:
    tasks = project.write_tasks(VERSION.format(tag="v1"))
    w = project.worker("--reload", "-c", "1", "--grace", "10")
    try:
        result = tasks.nap.delay(1.5)
        w.wait_for_log(rf"tasks\.nap\[{result.id}\] started")
        edit(project, "v2")
        w.wait_for_log(RESTART)
        assert result.get(timeout=15) == "rested"  # finished by the old worker, not lost
        w.wait_for_log(BANNER, count=2)
        assert tasks.version.delay().get(timeout=15) == "v2"
        assert [line[1] for line in project.ledger()] == ["nap"]  # it ran once

        child = worker_pids(w)[-1]
        w.signal(signal.SIGINT)  # the whole process group, as a terminal's Ctrl-C
        assert w.wait(15) == 0
        assert not alive(child)
    finally:
        for pid in worker_pids(w):
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
