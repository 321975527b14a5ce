"""`conveyor worker APP --reload`: restart the worker when the app's source files change.

Built like uvicorn's reloader: this small parent process watches the app's directories (with
watchfiles, an optional dependency) and runs the real worker as a child process, `python -m
conveyor worker APP ...` without `--reload`. On a change to a `*.py` file it stops the child
gracefully (SIGTERM: running tasks finish, or go back to the queue when the grace period is
over) and starts a new one. A child that dies on its own (a syntax error in the edited file)
is logged, and the next change starts a new one. SIGTERM/SIGINT to the parent stop the child
the same way and end with exit 0; a second signal is passed on too (the worker then stops at
once).

The child runs in a process group of its own, so that the parent passes on each signal exactly
once: a terminal's Ctrl-C or a `kill` of the whole group reaches only the parent, which tells
the child (a worker takes a second signal as "stop at once"). A parent killed with SIGKILL
cannot stop its child: that worker goes on until it is stopped itself.
"""

from __future__ import annotations

import importlib.util
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    import click

log = logging.getLogger("conveyor.worker.reload")

INSTALL_HINT = "--reload needs the watchfiles package: pip install conveyor[reload]"
IGNORED_DIRS = frozenset({".venv", "venv", "__pycache__", ".git", ".hg", ".svn", ".tox", ".nox",
                          ".mypy_cache", ".pytest_cache", ".ruff_cache", ".hypothesis",
                          "node_modules", "site-packages", "dist-packages"})
WATCHED_SUFFIXES = (".py",)  # SQLite files (q.db, -wal, -shm, -journal) are never among them
DEBOUNCE_MS = 1_600  # group a burst of changes for at most this long...
STEP_MS = 100  # ...ending it once nothing changed for this long
POLL_MS = 250  # how often the child and the signals are looked at while nothing changes
KILL_AFTER = 3  # the third stop signal kills the worker's process group outright


def wanted(path: str) -> bool:
    """A change the worker must be restarted for: a `*.py` file outside virtualenvs, caches and
    version-control directories."""
    p = Path(path)
    return p.suffix in WATCHED_SUFFIXES and not IGNORED_DIRS.intersection(p.parts[:-1])


def watch_dirs(app_path: str, cwd: str | None = None) -> list[Path]:
    """The directories to watch for APP: the current directory, and the app module's package
    (or its file's directory) when that lies elsewhere. Finding the module does not import it,
    so a syntax error is the child's to report."""
    if not app_path or app_path.count(":") > 1:
        raise ConfigError(f"bad APP {app_path!r}: expected 'module' or 'module:attribute'")
    module_name = app_path.partition(":")[0]
    here = Path(cwd or os.getcwd()).resolve()
    if str(here) not in sys.path and "" not in sys.path:
        sys.path.insert(0, str(here))  # as the loader does: APP is found from the cwd
    top = module_name.split(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise ConfigError(f"cannot load APP {app_path!r}: module {top!r} not found (run from "
                          "the directory that contains it, or set PYTHONPATH)")
    found: list[Path] = []
    if spec.submodule_search_locations:
        found += [Path(p) for p in spec.submodule_search_locations]
    elif spec.origin and spec.has_location:
        found.append(Path(spec.origin).parent)
    dirs = [here]
    for d in found:
        d = d.resolve()
        if d.name in IGNORED_DIRS or d == here or here in d.parents:
            continue  # already watched, or an installed module outside any project
        if d not in dirs:
            dirs.append(d)
    return dirs


def worker_command(ctx: click.Context) -> list[str]:
    """`python -m conveyor worker APP ...`: the options given to this command (on the command
    line or through the environment), without --reload."""
    import click
    from click.core import ParameterSource

    args: list[str] = []
    app_path = ""
    for param in ctx.command.params:
        name = param.name or ""
        value = ctx.params.get(name)
        if isinstance(param, click.Argument):
            app_path = str(value)
            continue
        if not isinstance(param, click.Option) or name == "reload" or value is None:
            continue
        if ctx.get_parameter_source(name) in (ParameterSource.DEFAULT, None):
            continue
        flag = max(param.opts, key=len)  # the long form: --concurrency, not -c
        if param.is_flag and not param.count:
            if value:
                args.append(flag)
            elif param.secondary_opts:
                args.append(max(param.secondary_opts, key=len))
        elif param.multiple:
            for item in value:
                args += [flag, str(item)]
        else:
            args += [flag, str(value)]
    return [sys.executable, "-m", "conveyor", "worker", app_path, *args]


def run_reloader(app_path: str, command: list[str], *, log_level: str = "INFO") -> int:
    """Run `command` (a worker) and restart it whenever a watched source file changes, until
    SIGTERM/SIGINT. Returns the exit code (0 after a stop signal)."""
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    from .runner import setup_logging

    dirs = watch_dirs(app_path)
    setup_logging(log_level)
    multiprocessing.current_process().name = "reloader"  # shown in each log line
    return Reloader(command, dirs).run()


class Reloader:
    def __init__(self, command: list[str], dirs: list[Path]) -> None:
        self.command = command
        self.dirs = dirs
        self.child: subprocess.Popen[bytes] | None = None
        self.signals = 0
        self.stop_event = threading.Event()

    # --- lifecycle ------------------------------------------------------------------------
    def run(self) -> int:
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            log.info("reloader (pid %d): watching %s for changes to *.py files", os.getpid(),
                     ", ".join(str(d) for d in self.dirs))
            self.start()
            for changes in self.changes():
                if self.signals:
                    break
                if changes:
                    self.restart(changes)
                elif self.child is not None and self.child.poll() is not None:
                    code = self.child.returncode
                    self.child = None
                    log.log(logging.INFO if code == 0 else logging.ERROR,
                            "the worker %s: waiting for a file to change to start it again",
                            describe_exit(code))
        finally:
            self.stop()
            for s, h in old.items():
                signal.signal(s, h)
        log.info("reloader stopped")
        return 0

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals += 1
        self.stop_event.set()
        child = self.child
        if self.signals > 1 and child is not None and child.poll() is None:
            self._signal_child(child, self.signals)

    def changes(self) -> Iterator[list[str]]:
        """Each burst of relevant changes (sorted paths), or [] about every POLL_MS, until a
        stop signal. Filtering here rather than in watchfiles: a SQLite database in a watched
        directory changes all the time, and the child must still be looked at."""
        from watchfiles import watch

        for raw in watch(*self.dirs, watch_filter=None, debounce=DEBOUNCE_MS, step=STEP_MS,
                         stop_event=self.stop_event, rust_timeout=POLL_MS,
                         yield_on_timeout=True, raise_interrupt=False):
            yield sorted({path for _, path in raw if wanted(path)})

    # --- the child ------------------------------------------------------------------------
    def start(self) -> None:
        # A process group of its own: only this process passes signals on (see the docstring).
        self.child = subprocess.Popen(self.command, process_group=0)
        log.info("worker started (pid %d)", self.child.pid)

    def restart(self, changed: Iterable[str]) -> None:
        paths = [self._relative(p) for p in changed]
        more = f" (and {len(paths) - 1} more)" if len(paths) > 1 else ""
        log.warning("%s changed%s: restarting the worker", paths[0], more)
        if self.child is not None:
            self._stop_child()
        if not self.signals:
            self.start()

    def stop(self) -> None:
        if self.child is not None:
            self._stop_child()

    def _stop_child(self) -> None:
        """SIGTERM, then wait: the worker finishes its running tasks (or gives them back when
        its grace period is over). A stop signal meanwhile is passed on by _on_signal."""
        child = self.child
        assert child is not None
        if child.poll() is None:
            log.info("stopping the worker (pid %d)", child.pid)
            self._signal_child(child, 1)
            while True:
                try:
                    child.wait(timeout=POLL_MS / 1000)
                    break
                except subprocess.TimeoutExpired:
                    continue
        code = child.returncode
        self.child = None
        if code not in (0, -signal.SIGTERM):  # -SIGTERM: stopped while it was still starting
            log.warning("the worker %s", describe_exit(code))

    @staticmethod
    def _signal_child(child: subprocess.Popen[bytes], count: int) -> None:
        try:
            if count >= KILL_AFTER:
                os.killpg(child.pid, signal.SIGKILL)  # the worker and its pool's children
            else:
                child.send_signal(signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass

    def _relative(self, path: str) -> str:
        p = Path(path)
        for d in self.dirs:
            if d in p.parents:
                return str(p.relative_to(d))
        return path


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"
