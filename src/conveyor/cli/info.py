"""Read-only commands: `status`, `tasks`, `periodic`."""

from __future__ import annotations

import click

from ..inspect import Inspector, Status, TaskInfo
from ..periodic import PeriodicInfo
from ..timefmt import age, local_time
from .common import APP_HELP, app_argument, load, table


@click.command(epilog=APP_HELP)
@app_argument()
def status(app_path: str) -> None:
    """Show queues, workers, dead letters and periodic tasks.

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
    if st.periodic:
        lines.append("")
        lines.append(f"periodic tasks: {len(st.periodic)}")
        lines.append(render_periodic(st.periodic, brief=True))
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

    Each with its schedule, last run (its tick time and outcome) and next run, in this
    machine's local time.
    """
    infos = Inspector(load(app_path)).periodic()
    if not infos:
        click.echo("no periodic tasks")
        return
    click.echo(render_periodic(infos))


def render_periodic(infos: list[PeriodicInfo], brief: bool = False) -> str:
    """A table: name, schedule, last run (tick time and state), next run; plus queue and the
    catch_up/overlap settings unless `brief`."""
    header = ["name", "schedule", "last run", "next run"]
    rows = []
    for p in infos:
        last = "-" if p.last_tick is None else f"{local_time(p.last_tick)} {p.last_state}"
        nxt = "never" if p.next_run is None else local_time(p.next_run)
        if p.waiting is not None:  # came due while no worker ran: runs when one starts
            nxt = f"{local_time(p.waiting)} (due, waiting for a worker)"
        row = [p.name, p.schedule, last, nxt]
        if not brief:
            flags = [] if p.catch_up else ["catch_up=False"]
            flags += [] if p.overlap else ["overlap=False"]
            row += [p.queue, " ".join(flags)]
        rows.append(row)
    if not brief:
        header += ["queue", "options"]
    return table(header, rows)
