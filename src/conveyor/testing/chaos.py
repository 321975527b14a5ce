"""Fault injection against real worker processes: the kill storm, the memory soak and the
SQLite hammer of docs/guarantees.md.

The test suite runs each scenario small (tests/e2e/test_chaos.py); `make chaos` runs them at
full size and prints the figures (`python -m conveyor.testing.chaos --help`). Every scenario
writes a tasks module into a working directory, starts `python -m conveyor worker` processes on
it, and counts real executions in a ledger file that each run appends one line to.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..app import Conveyor
from ..backends.base import SUCCESS, TERMINAL_STATES, redact
from ..worker.consumer import MAX_BATCH
from .namespaces import fresh_namespace

TASKS_MODULE = '''
import os
import time

from conveyor import Conveyor

app = Conveyor({url!r}, lease={lease!r})
LEDGER = {ledger!r}


# Retries: a pool child killed while running a task counts as one failed attempt (the
# supervisor cannot tell a kill from a task that crashes its process), so tasks that must
# survive a kill storm need a few.
@app.task(name="chaos.mark", retries=20, retry_delay=0)
def mark(n, seconds=0.0):
    """Append "pid n" to the ledger as it starts (one O_APPEND write: lines stay whole across
    processes), so a run cut short by a kill is counted too; then work for `seconds`."""
    fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{{os.getpid()}} {{n}}\\n".encode())
    finally:
        os.close(fd)
    if seconds:
        time.sleep(seconds)
    return n
'''


# --- processes --------------------------------------------------------------------------------
def children(pid: int) -> list[int]:
    """Direct children of `pid` (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children(p))
    return out


def rss_bytes(pids: Sequence[int]) -> int:
    """Resident memory of these processes together (VmRSS from /proc)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
    return total


class Workdir:
    """A directory holding the tasks module, the ledger and the workers' logs."""

    def __init__(self, root: Path, url: str, lease: float) -> None:
        self.root = root
        self.url = url
        self.ledger = root / "ledger.txt"
        (root / "chaos_tasks.py").write_text(TASKS_MODULE.format(
            url=url, lease=lease, ledger=str(self.ledger)))
        self.app = Conveyor(url, lease=lease)

        @self.app.task(name="chaos.mark")
        def mark(n: int, seconds: float = 0.0) -> int:  # the producer's stand-in
            return n

        self.mark = mark
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        self.env["PYTHONUNBUFFERED"] = "1"
        self._logs = 0
        self.started: list[subprocess.Popen[bytes]] = []

    def worker(self, *args: str) -> subprocess.Popen[bytes]:
        """Start `conveyor worker chaos_tasks:app` in its own process group."""
        self._logs += 1
        with open(self.root / f"worker-{self._logs}.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "conveyor", "worker", "chaos_tasks:app",
                 "--log-level", "WARNING", *args],
                cwd=self.root, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
        self.started.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")
                         for p in sorted(self.root.glob("worker-*.log")))

    def runs(self) -> list[tuple[int, int]]:
        """(pid, n) per execution, in the order they were written."""
        try:
            text = self.ledger.read_text()
        except FileNotFoundError:
            return []
        return [(int(a), int(b)) for a, b in (line.split() for line in text.splitlines())]

    def count_runs(self) -> int:
        try:
            with open(self.ledger, "rb") as f:
                return f.read().count(b"\n")
        except FileNotFoundError:
            return 0

    def enqueue(self, n: int, seconds: float = 0.0, chunk: int = 1000) -> list[str]:
        ids: list[str] = []
        for start in range(0, n, chunk):
            calls = [(i, seconds) for i in range(start, min(n, start + chunk))]
            ids += [r.id for r in self.mark.map(calls)]
        return ids

    def close(self) -> None:
        """Kill whatever worker is still running (a scenario that failed half-way)."""
        for proc in self.started:
            if proc.poll() is None:
                kill_group(proc)
        self.app.close()


def stop(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """SIGTERM the worker's group and wait; SIGKILL if it does not exit in time."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        return proc.wait(timeout)
    except ProcessLookupError:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        return -9


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(30)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str,
             interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# --- 1. kill storm ----------------------------------------------------------------------------
@dataclass
class Kill:
    at: float  # seconds since the storm began
    what: str  # "child" (the supervisor replaces it) or "worker" (the whole process group)
    pids: list[int]


@dataclass
class StormReport:
    backend: str
    tasks: int
    seconds: float
    seed: int
    kills: list[Kill]
    runs: int
    extra_runs: int
    #: extra runs per killed process (the earlier, unsettled run was in that process)
    extra_by_killed: dict[int, int] = field(default_factory=dict)
    #: extra runs whose earlier run was in a process nobody killed: must be zero
    unexplained: int = 0
    missing: int = 0
    not_succeeded: int = 0  # tasks whose outcome is not SUCCESS: must be zero
    failures: list[str] = field(default_factory=list)  # the first few of them, decoded

    def lines(self) -> list[str]:
        worst = max(self.extra_by_killed.values(), default=0)
        kinds = Counter(k.what for k in self.kills)
        return [
            f"kill storm on {self.backend}: {self.tasks:,} tasks in {self.seconds:.1f}s "
            f"(seed {self.seed})",
            f"  SIGKILLs: {len(self.kills)} ({kinds['child']} pool children, "
            f"{kinds['worker']} whole workers, each restarted)",
            f"  runs: {self.runs:,}; never ran: {self.missing}; outcome not SUCCESS: "
            f"{self.not_succeeded}; extra runs: {self.extra_runs} "
            f"(at most {worst} from one killed process; unexplained: {self.unexplained})",
            *(f"  not SUCCESS: {f}" for f in self.failures),
        ]


def kill_storm(url: str, root: Path, *, tasks: int = 10_000, workers: int = 2,
               concurrency: int = 2, every: tuple[float, float] = (1.0, 3.0),
               task_seconds: float = 0.01, lease: float = 3.0, seed: int | None = None,
               timeout: float = 600.0) -> StormReport:
    """`tasks` tasks; every `every` seconds a random worker process gets SIGKILL: a pool child
    (its supervisor starts another) or a whole worker (restarted here). Returns the counts."""
    seed = random.randrange(1 << 30) if seed is None else seed
    rng = random.Random(seed)
    wd = Workdir(root, url, lease)
    try:
        group = wd.enqueue(tasks, task_seconds)
        t0 = time.monotonic()
        procs = [wd.worker("-c", str(concurrency)) for _ in range(workers)]
        kills: list[Kill] = []
        deadline = t0 + timeout

        def finished() -> bool:
            if len({n for _, n in wd.runs()}) < tasks:
                return False
            stored = wd.app.backend.get_results(group, wd.app.clock.now())
            return sum(1 for r in stored.values() if r.state in TERMINAL_STATES) >= tasks

        next_kill = time.monotonic() + rng.uniform(*every)
        next_check = 0.0
        while True:
            now = time.monotonic()
            if now >= next_check:
                if finished():
                    break
                next_check = now + 0.5
            if now > deadline:
                raise TimeoutError(f"kill storm: not done after {timeout:.0f}s (seed {seed})")
            if now < next_kill:
                time.sleep(0.05)
                continue
            next_kill = time.monotonic() + rng.uniform(*every)
            i = rng.randrange(len(procs))
            kids = children(procs[i].pid)
            if kids and rng.random() < 0.6:
                victim = rng.choice(kids)
                try:
                    os.kill(victim, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                kills.append(Kill(time.monotonic() - t0, "child", [victim]))
            else:
                pids = tree(procs[i].pid)
                kill_group(procs[i])
                kills.append(Kill(time.monotonic() - t0, "worker", pids))
                procs[i] = wd.worker("-c", str(concurrency))
        seconds = time.monotonic() - t0
        for p in procs:
            stop(p)
        report = storm_report(redact(url), tasks, seconds, seed, kills, wd.runs())
        results = wd.app.backend.get_results(group, wd.app.clock.now())
        bad = [r for r in results.values() if r.state != SUCCESS]
        report.not_succeeded = len(bad)
        report.failures = [f"{r.id}: {r.state} {_outcome_text(wd.app, r.data)}" for r in bad[:5]]
        return report
    finally:
        wd.close()


def _outcome_text(app: Conveyor, data: bytes | None) -> str:
    try:
        return repr(app.codec.decode(data)) if data is not None else ""
    except Exception as exc:  # a report must not fail on what it reports
        return f"(undecodable: {exc})"


def storm_report(backend: str, tasks: int, seconds: float, seed: int, kills: list[Kill],
                 runs: list[tuple[int, int]]) -> StormReport:
    """Attribute each extra run: the run before it must have been in a killed process."""
    killed = {pid for k in kills for pid in k.pids}
    by_task: dict[int, list[int]] = {}
    for pid, n in runs:
        by_task.setdefault(n, []).append(pid)
    extra_by: Counter[int] = Counter()
    unexplained = 0
    for pids in by_task.values():
        for pid in pids[:-1]:  # every run but the last was cut short or not reported
            if pid in killed:
                extra_by[pid] += 1
            else:
                unexplained += 1
    extra = len(runs) - len(by_task)
    return StormReport(backend, tasks, seconds, seed, kills, len(runs), extra, dict(extra_by),
                       unexplained, tasks - len(by_task))


# --- 2. soak ----------------------------------------------------------------------------------
WARM_UP = 1.0  # seconds after a worker starts before its memory counts (children starting)

@dataclass
class SoakReport:
    backend: str
    tasks: int
    seconds: float
    idle_rss: int  # a worker on an empty queue, after start
    samples: list[tuple[float, int, int]]  # (seconds since start, tasks done, RSS in bytes)
    runs: int
    exactly_once: bool

    def _rss(self, low: float, high: float) -> list[int]:
        """RSS samples taken WARM_UP seconds or more after start, between these fractions of
        the tasks done."""
        return [rss for t, done, rss in self.samples
                if t >= WARM_UP and low * self.tasks <= done < high * self.tasks]

    @property
    def warm_rss(self) -> int:
        """RSS once warmed up (children started, 10-30% done), while the queue still holds
        most tasks."""
        window = (self._rss(0.1, 0.3) or self._rss(0.0, 0.5)
                  or [rss for _, _, rss in self.samples[-1:]])
        return int(statistics.median(window))

    @property
    def late_rss(self) -> int:
        """The highest RSS over the second half."""
        return max(self._rss(0.5, 1.01) or [self.samples[-1][2]])

    @property
    def growth(self) -> float:
        return self.late_rss / self.warm_rss - 1

    @property
    def queued_growth(self) -> float:
        """RSS with a full queue (warmed up) over RSS of a worker on an empty queue."""
        return self.warm_rss / self.idle_rss - 1

    def lines(self) -> list[str]:
        mb = 1024 * 1024
        return [
            f"soak on {self.backend}: {self.tasks:,} no-op tasks through one worker in "
            f"{self.seconds:.1f}s ({self.tasks / self.seconds:,.0f}/s)",
            f"  worker RSS (supervisor + children): idle on an empty queue "
            f"{self.idle_rss / mb:.1f} MB; warmed up with {int(self.tasks * 0.7):,}+ queued "
            f"{self.warm_rss / mb:.1f} MB ({self.queued_growth:+.1%}); highest in the second "
            f"half {self.late_rss / mb:.1f} MB ({self.growth:+.1%} after warm-up)",
            f"  runs: {self.runs:,}; every task exactly once: {self.exactly_once}",
        ]


def soak(url: str, root: Path, *, tasks: int = 200_000, concurrency: int = 2,
         pool: str = "process", timeout: float = 1800.0) -> SoakReport:
    """Drain `tasks` no-op tasks through one worker, sampling its memory as it goes."""
    wd = Workdir(root, url, lease=30.0)
    args = ("-c", str(concurrency), "--pool", pool)
    try:
        idle = wd.worker(*args)
        time.sleep(3.0)  # started, children forked, idle polling under way
        idle_rss = rss_bytes(tree(idle.pid))
        stop(idle)
        wd.enqueue(tasks)
        t0 = time.monotonic()
        proc = wd.worker(*args)
        samples: list[tuple[float, int, int]] = []
        deadline = t0 + timeout
        while True:
            done = wd.count_runs()
            samples.append((time.monotonic() - t0, done, rss_bytes(tree(proc.pid))))
            if done >= tasks:
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"soak stopped at {done:,}/{tasks:,} tasks\n{wd.logs()}")
            time.sleep(0.25)
        seconds = time.monotonic() - t0
        time.sleep(1.0)
        samples.append((time.monotonic() - t0, wd.count_runs(), rss_bytes(tree(proc.pid))))
        stop(proc)
        counts = Counter(n for _, n in wd.runs())
        once = len(counts) == tasks and set(counts.values()) == {1}
        return SoakReport(redact(url), tasks, seconds, idle_rss, samples, sum(counts.values()),
                          once)
    finally:
        wd.close()


# --- 3. SQLite hammer -------------------------------------------------------------------------
PRODUCER = '''
import sys
from chaos_tasks import mark
count = int(sys.argv[1])
base = int(sys.argv[2])
for n in range(base, base + count):
    mark.delay(n)
'''


@dataclass
class HammerReport:
    producers: int
    tasks: int
    seconds: float
    wal_max: int
    wal_end: int
    locked_errors: int
    exactly_once: bool
    worker_exit: int

    def lines(self) -> list[str]:
        mb = 1024 * 1024
        return [
            f"SQLite hammer: {self.producers} producer processes (one delay() per task) and "
            f"4 worker processes on one file: {self.tasks:,} tasks in {self.seconds:.1f}s",
            f"  'database is locked' seen: {self.locked_errors}; every task exactly once: "
            f"{self.exactly_once}; WAL file at most {self.wal_max / mb:.1f} MB "
            f"({self.wal_end / mb:.1f} MB at the end)",
        ]


def sqlite_hammer(root: Path, *, producers: int = 16, per_producer: int = 5_000,
                  timeout: float = 900.0) -> HammerReport:
    """`producers` processes each enqueue `per_producer` tasks one by one while one worker
    with 4 children drains them; the WAL file's size is sampled all along."""
    db = root / "q.db"
    wd = Workdir(root, f"sqlite:///{db}", lease=30.0)
    wal = Path(f"{db}-wal")
    (root / "produce.py").write_text(textwrap.dedent(PRODUCER))
    env = {**wd.env, "PYTHONPATH": str(root)}
    try:
        t0 = time.monotonic()
        worker = wd.worker("-c", "4")
        procs = [subprocess.Popen([sys.executable, "produce.py", str(per_producer),
                                   str(p * per_producer)], cwd=root, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for p in range(producers)]
        total = producers * per_producer
        wal_max = 0
        deadline = t0 + timeout
        while wd.count_runs() < total:
            if time.monotonic() > deadline:
                raise TimeoutError(f"hammer: {wd.count_runs():,}/{total:,} after {timeout}s")
            try:
                wal_max = max(wal_max, wal.stat().st_size)
            except FileNotFoundError:
                pass
            time.sleep(0.1)
        seconds = time.monotonic() - t0
        errors = b""
        for p in procs:
            _, err = p.communicate(timeout=60)
            errors += err
            if p.returncode != 0:
                raise RuntimeError(f"a producer failed:\n{err.decode(errors='replace')}")
        code = stop(worker)
        text = errors.decode(errors="replace") + wd.logs()
        counts = Counter(n for _, n in wd.runs())
        once = len(counts) == total and set(counts.values()) == {1}
        wal_end = wal.stat().st_size if wal.exists() else 0
        return HammerReport(producers, total, seconds, wal_max, wal_end,
                            text.lower().count("database is locked"), once, code)
    finally:
        wd.close()


# --- command line -----------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m conveyor.testing.chaos",
        description="Long fault-injection runs against real workers (make chaos). Redis and "
                    "PostgreSQL come from CONVEYOR_TEST_REDIS_URL / CONVEYOR_TEST_POSTGRES_URL "
                    "(default: the local servers); each run uses a fresh prefix or schema.")
    parser.add_argument("scenario", choices=["storm", "soak", "hammer"])
    parser.add_argument("--backend", action="append", choices=["sqlite", "redis", "postgresql"],
                        default=[], help="repeat for several (default: sqlite)")
    parser.add_argument("--tasks", type=int, default=None)
    parser.add_argument("--producers", type=int, default=16, help="hammer only")
    parser.add_argument("--seed", type=int, default=None, help="storm only")
    args = parser.parse_args(argv)
    failed = False
    for kind in args.backend or ["sqlite"]:
        with tempfile.TemporaryDirectory(prefix="conveyor-chaos-") as tmp:
            root = Path(tmp)
            report: Any
            with fresh_namespace(kind, root) as url:
                if args.scenario == "storm":
                    report = kill_storm(url, root, tasks=args.tasks or 10_000, seed=args.seed)
                    ok = (report.missing == 0 and report.unexplained == 0
                          and report.not_succeeded == 0
                          and max(report.extra_by_killed.values(), default=0) <= MAX_BATCH)
                elif args.scenario == "soak":
                    report = soak(url, root, tasks=args.tasks or 200_000)
                    ok = (report.exactly_once and report.growth < 0.10
                          and report.queued_growth < 0.10)
                else:
                    if kind != "sqlite":
                        parser.error("the hammer is a SQLite scenario")
                    report = sqlite_hammer(root, producers=args.producers,
                                           per_producer=(args.tasks or 80_000) // args.producers)
                    ok = report.exactly_once and report.locked_errors == 0
            print("\n".join(report.lines()), flush=True)
            print("  PASS" if ok else "  FAIL", flush=True)
            failed = failed or not ok
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
