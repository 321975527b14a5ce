"""Redis and PostgreSQL servers that a test starts, stops and restarts itself.

The shared servers on 6379/5432 must never be restarted by a test (other tests use them), so
fault tests run their own from the installed binaries (`redis-server`; `initdb`/`pg_ctl`, run
as the `postgres` user when the tests run as root, since PostgreSQL refuses root). Both are
durable: Redis with an append-only file fsynced on every write, PostgreSQL with its WAL.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from servers import in_ci


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _need(binary: str) -> str:
    found = shutil.which(binary)
    if found is None:
        for base in Path("/usr/lib/postgresql").glob("*/bin"):
            if (base / binary).exists():
                return str(base / binary)
        text = f"{binary} is not installed; fault tests start their own servers from it"
        if in_ci():
            pytest.fail(f"CI is set: {text}", pytrace=False)
        pytest.skip(text)
    return found


def _wait_port(port: int, up: bool, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                if up:
                    return
        except OSError:
            if not up:
                return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} did not go {'up' if up else 'down'} in {timeout}s")


class OwnRedis:
    """A redis-server on a free port with its data in `directory`."""

    def __init__(self, directory: Path, password: str | None = None, tls: bool = False) -> None:
        self.binary = _need("redis-server")
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.password = password
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None
        if tls:
            subprocess.run([_need("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                            "-keyout", str(directory / "key.pem"),
                            "-out", str(directory / "cert.pem"), "-days", "2",
                            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                           check=True, capture_output=True, timeout=60)

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls:
            return (f"rediss://{auth}127.0.0.1:{self.port}/0"
                    f"?ssl_ca_certs={self.directory / 'cert.pem'}")
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        port = ["--port", "0", "--tls-port", str(self.port),
                "--tls-cert-file", str(self.directory / "cert.pem"),
                "--tls-key-file", str(self.directory / "key.pem"),
                "--tls-ca-cert-file", str(self.directory / "cert.pem"),
                "--tls-auth-clients", "no"] if self.tls else ["--port", str(self.port)]
        args = [self.binary, *port, "--bind", "127.0.0.1",
                "--dir", str(self.directory), "--appendonly", "yes", "--appendfsync", "always",
                "--save", "", "--maxmemory-policy", "noeviction"]
        if self.password:
            args += ["--requirepass", self.password]
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - lives with the server
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True)
        log.close()
        _wait_port(self.port, up=True)

    def stop(self, crash: bool = False) -> None:
        """SIGTERM (Redis flushes and exits) or, with `crash`, SIGKILL."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill() if crash else self.proc.terminate()
            self.proc.wait(20)
        self.proc = None
        _wait_port(self.port, up=False)

    def restart(self, down_for: float = 1.0, crash: bool = False) -> None:
        self.stop(crash)
        time.sleep(down_for)
        self.start()


class OwnPostgres:
    """A PostgreSQL cluster made with initdb in a temporary directory, on a free port."""

    def __init__(self) -> None:
        self.initdb = _need("initdb")
        self.pg_ctl = _need("pg_ctl")
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="conveyor-pg-"))
        self.data = self.root / "data"
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        self._run([self.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres",
                   "--no-sync", "-E", "UTF8"])
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{self.root}'\nmax_connections = 100\n")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, args: list[str]) -> None:
        if self.as_root:
            args = ["runuser", "-u", "postgres", "--", *args]
        subprocess.run(args, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self._run([self.pg_ctl, "-D", str(self.data), "-l", str(self.root / "pg.log"), "-w",
                   "start"])
        _wait_port(self.port, up=True)

    def stop(self, crash: bool = False) -> None:
        """A fast shutdown, or with `crash` an immediate one (recovery from the WAL on start)."""
        self._run([self.pg_ctl, "-D", str(self.data), "-m", "immediate" if crash else "fast",
                   "-w", "stop"])
        _wait_port(self.port, up=False)

    def restart(self, down_for: float = 1.0, crash: bool = False) -> None:
        self.stop(crash)
        time.sleep(down_for)
        self.start()

    def remove(self) -> None:
        try:
            self.stop()
        except (subprocess.CalledProcessError, RuntimeError):
            pass
        shutil.rmtree(self.root, ignore_errors=True)
