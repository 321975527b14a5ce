"""Read-only commands: `status`, `tasks`, `periodic`."""

from __future__ import annotations

import click

from ..inspect import Inspector, Status, TaskInfo
from .common import APP_HELP, age, app_argument, load, table


@click.command(epilog=APP_HELP)
@app_argument()
def status(app_path: str) -> None:
    """Show queues, workers and dead letters.

    Queues with their ready, scheduled and running counts; live workers with their last
    heartbeat; how many dead letters wait.
    """
    app = load(app_path)
    click.echo(render_status(app.safe_url, Inspector(app).status()))


def render_status(url: str, st: Status) -> str:
    lines = [f"backend: {url}", ""]
    lines.append(table(["queue", "ready", "scheduled", "running"],
                       [(q.name, q.ready, q.scheduled, q.running) for q in st.queues],
                       right=(1, 2, 3)))
    lines.append("")
    if st.workers:
        lines.append(f"workers: {len(st.workers)}")
        lines.append(table(
            ["id", "node", "pid", "pool", "concurrency", "queues", "heartbeat"],
            [(w.id, w.node, "-" if w.pid is None else w.pid, w.pool,
              "-" if w.concurrency is None else w.concurrency,
              "*" if w.queues is None else ",".join(w.queues), f"{age(w.age)} ago")
             for w in st.workers]))
    else:
        lines.append("workers: none")
    lines.append("")
    lines.append(f"dead letters: {st.dead}")
    return "\n".join(lines)


@click.command(epilog=APP_HELP)
@app_argument()
def tasks(app_path: str) -> None:
    """List the registered tasks.

    Each with its queue, priority, retries, timeout and other options that differ from the
    defaults.
    """
    infos = Inspector(load(app_path)).tasks()
    if not infos:
        click.echo("no tasks registered")
        return
    click.echo(table(["name", "queue", "priority", "retries", "timeout", "options"],
                     [(t.name, t.queue, t.priority, t.retries,
                       "-" if t.timeout is None else f"{t.timeout:g}s", _flags(t))
                      for t in infos]))


def _flags(t: TaskInfo) -> str:
    flags = []
    if t.is_async:
        flags.append("async")
    if t.bind:
        flags.append("bind")
    if not t.store_result:
        flags.append("store_result=False")
    flags += [f"{k}={v}" for k, v in t.options.items()]
    return " ".join(flags)


@click.command(epilog=APP_HELP)
@app_argument()
def periodic(app_path: str) -> None:
    """List periodic tasks.

    Each with its schedule, last run and next run.
    """
    load(app_path)
    # Periodic tasks do not exist in this version yet, so no app has any.
    click.echo("no periodic tasks")
