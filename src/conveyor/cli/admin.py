"""Commands that change the backend: `dead` (list, retry, purge), `purge` and `migrate`."""

from __future__ import annotations

import sys

import click

from ..inspect import DeadTask, Inspector
from ..timefmt import local_time
from .common import (
    APP_HELP,
    BadUsage,
    CliError,
    ConveyorGroup,
    app_argument,
    load,
    table,
    to_json,
)


def _inspector(ctx: click.Context) -> Inspector:
    return Inspector(load(ctx.obj))


@click.group(cls=ConveyorGroup, invoke_without_command=True,
             epilog=f"Without a subcommand: list. {APP_HELP}")
@app_argument()
@click.pass_context
def dead(ctx: click.Context, app_path: str) -> None:
    """List, retry or purge dead letters.

    Dead letters are tasks that failed for good or could not be run, kept with the reason.
    """
    ctx.obj = app_path
    if ctx.invoked_subcommand is None:
        ctx.invoke(dead_list)


@dead.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True,
              help="Show at most this many (oldest first).")
@click.option("-v", "--verbose", is_flag=True, help="Show each task's arguments too.")
@click.pass_context
def dead_list(ctx: click.Context, limit: int = 100, verbose: bool = False) -> None:
    """List dead letters (the default).

    Shows id, task, attempts, when it died and why.
    """
    inspector = _inspector(ctx)
    letters = inspector.dead_letters(limit=limit + 1)
    if not letters:
        click.echo("no dead letters")
        return
    shown = letters[:limit]
    click.echo(table(["id", "task", "attempts", "died", "reason"],
                     [(d.id, d.task, d.attempts, local_time(d.died_at), _reason(d))
                      for d in shown], right=(2,)))
    if verbose:
        for d in shown:
            click.echo(f"\n{d.id}  {d.task}  queue={d.queue}\n  args:   {to_json(d.args)}\n"
                       f"  kwargs: {to_json(d.kwargs)}")
    if len(letters) > limit:
        click.echo(f"\n(showing the oldest {limit} of {inspector.dead_count()}; use --limit)")


def _reason(d: DeadTask) -> str:
    reason = " ".join(d.reason.split())  # one line per letter
    if d.decode_error is not None and d.decode_error not in reason:
        reason += f" (body unreadable here: {d.decode_error})"
    return reason


@dead.command("retry")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--all", "all_", is_flag=True, help="Retry every dead letter.")
@click.pass_context
def dead_retry(ctx: click.Context, ids: tuple[str, ...], all_: bool) -> None:
    """Put dead letters back in their queue.

    They run again with a fresh attempt count.
    """
    if bool(ids) == all_:
        raise BadUsage("give dead letter ids or --all (not both)")
    done = _inspector(ctx).retry_dead(None if all_ else list(ids))
    click.echo(f"requeued {len(done)} dead letter(s)")
    missing = [i for i in ids if i not in done]
    if missing:
        raise CliError(f"not a dead letter: {', '.join(missing)}")


@dead.command("purge")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.pass_context
def dead_purge(ctx: click.Context, ids: tuple[str, ...]) -> None:
    """Delete dead letters: the given ids, or all."""
    count = _inspector(ctx).purge_dead(list(ids) or None)
    click.echo(f"deleted {count} dead letter(s)")


@click.command(epilog=APP_HELP)
@app_argument()
@click.option("-q", "--queue", default=None, help="Only this queue (default: every queue).")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
def purge(app_path: str, queue: str | None, force: bool) -> None:
    """Delete the tasks waiting in the queues.

    Running tasks are left alone. On a terminal it asks for confirmation unless -f/--force
    is given; from scripts (no terminal) it purges as told.
    """
    inspector = Inspector(load(app_path))
    if not force and sys.stdin.isatty():
        waiting = sum(q.ready + q.scheduled for q in inspector.queues()
                      if queue is None or q.name == queue)
        where = f"queue {queue!r}" if queue else "every queue"
        if not click.confirm(f"Delete {waiting} waiting task(s) from {where}?"):
            raise CliError("nothing purged")
    count = inspector.purge(queue)
    click.echo(f"purged {count} message(s)")


@click.command(epilog=APP_HELP)
@app_argument()
def migrate(app_path: str) -> None:
    """Create or upgrade the backend's schema.

    Every backend also does this by itself on first use; on PostgreSQL, run it once per deploy,
    before the new code starts, so the versioned migrations are applied at a moment you choose.
    """
    app = load(app_path)
    click.echo(f"{app.safe_url}: {Inspector(app).migrate()}")
