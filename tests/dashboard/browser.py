"""Pieces the browser tests and the README screenshot script share: finding Debian's headless
Chromium and Playwright (skip locally, fail under CI when missing), and a real
`conveyor dashboard` process on a project directory, stopped by its own pid."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from servers import unavailable

CHROMIUM = os.environ.get("CONVEYOR_TEST_CHROMIUM", "/usr/bin/chromium")
HOW_TO = ("install them with `apt-get install -y chromium chromium-driver` (as root) and "
          "`.venv/bin/pip install playwright` (no `playwright install`: the tests use the "
          "system's Chromium), or set CONVEYOR_TEST_CHROMIUM to another Chromium binary")
OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "browser"


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    why = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        why.append("Playwright for Python is not installed")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        found = shutil.which("chromium")
        why.append(f"no Chromium at {CHROMIUM}" + (f" (found {found}: set "
                                                     "CONVEYOR_TEST_CHROMIUM)" if found else ""))
    return "; ".join(why) or None


def require_browser() -> None:
    """Skip (locally) or fail (under CI) when Chromium or Playwright is missing."""
    why = missing()
    if why is None:
        return
    unavailable("browser", f"browser tests need headless Chromium and Playwright: {why}; "
                           f"{HOW_TO}")


def launch(playwright: Any) -> Any:
    """Debian's Chromium, headless; Playwright never downloads a browser of its own."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=["--no-sandbox", "--disable-dev-shm-usage"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Dashboard:
    """`python -m conveyor dashboard tasks:app` in `root` (where tasks.py is), on a free
    port of 127.0.0.1; its output goes to a file so a failing test can show it."""

    def __init__(self, root: Path, token: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / f"dashboard-{self.port}.log"
        full = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        full.update(env or {})
        full["PYTHONPATH"] = str(root)
        full["PYTHONUNBUFFERED"] = "1"
        args = [sys.executable, "-m", "conveyor", "dashboard", "tasks:app", "--port",
                str(self.port), "--log-level", "warning"]
        if token is not None:
            full["CONVEYOR_DASHBOARD_TOKEN"] = token  # not on the command line
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(args, cwd=root, env=full, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self._wait_up()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _wait_up(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    pytest.fail(f"the dashboard exited ({self.proc.returncode}):\n{self.log()}")
                if time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"the dashboard did not start in {timeout}s:\n{self.log()}")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
