"""The RQ task bench/servers.py enqueues: a no-op in an importable module (RQ workers import
jobs by dotted name). RQ stores each job's return value (None here) in Redis and adds the job
to the queue's FinishedJobRegistry, which the benchmark counts."""


def noop() -> None:
    """Does nothing."""
