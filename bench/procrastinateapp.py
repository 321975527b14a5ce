"""The procrastinate app bench/servers.py compares with: PsycopgConnector on BENCH_PG_URL (a
database of its own), one synchronous no-op task. procrastinate stores no return values; a job
that finished is a row of procrastinate_jobs with status 'succeeded' (jobs are kept, the
default), which is what the benchmark counts and polls."""

import os

from procrastinate import App, PsycopgConnector

app = App(connector=PsycopgConnector(
    conninfo=os.environ.get("BENCH_PG_URL",
                            "postgresql://postgres@127.0.0.1:5432/bench_procrastinate")))


@app.task(name="bench.noop")
def noop() -> None:
    """Does nothing."""
