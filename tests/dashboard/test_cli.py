"""`conveyor dashboard` as a user runs it: `python -m conveyor dashboard ...` in a
subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

TASKS = textwrap.dedent("""
    from conveyor import Conveyor

    app = Conveyor("sqlite:///{db}", secret_key="never-shown")

    @app.task(name="add")
    def add(a, b):
        return a + b
""")


def conveyor(tmp_path: Path, *args: str, env: dict[str, str] | None = None,
             ) -> subprocess.Popen[str]:
    (tmp_path / "dash_tasks.py").write_text(TASKS.format(db=tmp_path / "tasks.db"))
    full = {k: v for k, v in os.environ.items() if k != "CONVEYOR_DASHBOARD_TOKEN"}
    full["PYTHONPATH"] = str(tmp_path)
    full.update(env or {})
    return subprocess.Popen([sys.executable, "-m", "conveyor", "dashboard", "dash_tasks:app",
                             *args], cwd=tmp_path, env=full, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "::", "example.com"])
def test_refuses_a_non_local_bind_without_a_token(tmp_path: Path, host: str) -> None:
    proc = conveyor(tmp_path, "--host", host, "--port", "1")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert out == ""
    assert err.strip().count("\n") == 0  # one line
    assert f"refusing to listen on {host} without a token" in err
    assert "CONVEYOR_DASHBOARD_TOKEN" in err


def test_empty_token_is_refused(tmp_path: Path) -> None:
    proc = conveyor(tmp_path, "--host", "0.0.0.0", env={"CONVEYOR_DASHBOARD_TOKEN": " "})
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "must not be empty" in err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serves_with_a_token_from_the_environment(tmp_path: Path) -> None:
    port = free_port()
    proc = conveyor(tmp_path, "--port", str(port), "--log-level", "warning",
                    env={"CONVEYOR_DASHBOARD_TOKEN": "sekrit"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                r = httpx.get(f"{base}/api/queues", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.1)
        assert r.status_code == 401
        auth = {"Authorization": "Bearer sekrit"}
        r = httpx.post(f"{base}/api/tasks", json={"task": "add", "args": [1, 2]},
                       headers=auth, timeout=5)
        assert r.status_code == 201, r.text
        queues = httpx.get(f"{base}/api/queues", headers=auth, timeout=5).json()["queues"]
        assert queues == [{"name": "default", "ready": 1, "scheduled": 0, "running": 0}]
        assert "server" not in r.headers
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    assert "sekrit" not in out + err and "never-shown" not in out + err


@pytest.mark.parametrize(("host", "local"), [
    ("127.0.0.1", True), ("127.1.2.3", True), ("localhost", True), ("::1", True),
    ("[::1]", True), ("0.0.0.0", False), ("::", False), ("10.0.0.1", False),
    ("example.com", False), ("", False)])
def test_is_local(host: str, local: bool) -> None:
    from conveyor.dashboard.hosts import is_local

    assert is_local(host) is local


@pytest.mark.parametrize(("header", "name"), [
    ("127.0.0.1:8470", "127.0.0.1"), ("localhost", "localhost"), ("[::1]:8470", "::1"),
    ("[::1]", "::1"), ("evil.example:80", "evil.example"), ("", "")])
def test_host_name(header: str, name: str) -> None:
    from conveyor.dashboard.hosts import host_name

    assert host_name(header) == name
