"""`conveyor worker`: parse options and hand over to the runner; no worker logic here."""

from __future__ import annotations

import click

from .common import APP_HELP, app_argument, load

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def split_queues(values: tuple[str, ...]) -> list[str] | None:
    """`-q a,b -q c` -> ['a', 'b', 'c']; nothing given -> None (every queue)."""
    queues: list[str] = []
    for value in values:
        for name in value.split(","):
            name = name.strip()
            if name and name not in queues:
                queues.append(name)
    return queues or None


@click.command(epilog=APP_HELP)
@app_argument()
@click.option("-c", "--concurrency", type=click.IntRange(min=1), default=None,
              help="Tasks run at once (default: the number of CPUs; 100 with --pool async).")
@click.option("--pool", type=click.Choice(["process", "thread", "async"]), default="process",
              show_default=True, help="How tasks run: child processes, threads, or one asyncio event loop.")
@click.option("-q", "--queues", "queue_opts", multiple=True, metavar="QUEUE,...",
              help="Queues to consume, comma-separated or repeated (default: the app's default "
                   "queue and every queue its tasks name).")
@click.option("--max-tasks-per-child", type=click.IntRange(min=1), default=None,
              help="Replace a pool child after it ran this many tasks.")
@click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False),
              default="INFO", show_default=True)
@click.option("--grace", type=click.FloatRange(min=0), default=30.0, show_default=True,
              metavar="SECONDS",
              help="On SIGTERM/SIGINT, how long running tasks may take to finish.")
@click.option("--node", default=None, help="Name shown for this worker (default: host name).")
@click.option("--no-scheduler", is_flag=True,
              help="Do not schedule periodic tasks from this worker (it still runs them).")
@click.option("--reload", is_flag=True,
              help="For development: restart the worker when the app's *.py files change "
                   "(needs watchfiles: pip install conveyor[reload]).")
@click.pass_context
def worker(ctx: click.Context, app_path: str, concurrency: int | None, pool: str,
           queue_opts: tuple[str, ...], max_tasks_per_child: int | None, log_level: str,
           grace: float, node: str | None, no_scheduler: bool, reload: bool) -> None:
    """Run a worker.

    It takes tasks from the queues and runs them until SIGTERM or SIGINT.

    The first signal stops taking tasks and lets running ones finish (up to --grace); a
    second stops at once, and unfinished tasks go back to the queue.
    """
    if reload:  # a parent that watches files and runs this command, without --reload
        from ..worker.reload import run_reloader, worker_command

        ctx.exit(run_reloader(app_path, worker_command(ctx), log_level=log_level.upper()))
    app = load(app_path)
    from ..worker.runner import run_worker

    code = run_worker(app, concurrency=concurrency, pool=pool, queues=split_queues(queue_opts),
                      max_tasks_per_child=max_tasks_per_child, log_level=log_level.upper(),
                      grace=grace, node=node, scheduler=not no_scheduler)
    ctx.exit(code)
