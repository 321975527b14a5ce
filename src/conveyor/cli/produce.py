"""`enqueue` and `result`: send a task from the shell and read what became of it."""

from __future__ import annotations

import difflib
import json
import sys
from typing import Any, NoReturn

import click

from ..errors import TaskFailed
from ..errors import TimeoutError as WaitTimeout
from ..inspect import Inspector, Outcome
from .common import (
    APP_HELP,
    EXIT_FAILED,
    BadUsage,
    CliError,
    app_argument,
    load,
    parse_arg,
    to_json,
)

ARG_HELP = ("Each ARG is read as JSON when it parses (2 is a number, '\"2\"' a string) and as "
            "plain text otherwise.")


@click.command(epilog=f"{ARG_HELP} {APP_HELP}",
               context_settings={"ignore_unknown_options": True})  # so `-5` is an ARG
@app_argument()
@click.argument("task_name", metavar="TASK")
@click.argument("args", nargs=-1, metavar="[ARG]...")
@click.option("--kwargs", "kwargs_json", metavar="JSON", default=None,
              help='Keyword arguments as a JSON object, e.g. \'{"x": 1}\'.')
@click.option("--countdown", type=click.FloatRange(min=0), default=None, metavar="S",
              help="Do not run before S seconds from now.")
@click.option("--priority", type=int, default=None, metavar="P", help="Larger runs first.")
@click.option("-q", "--queue", default=None, help="Queue to use instead of the task's own.")
@click.option("--wait", is_flag=True, help="Wait for the task and print its result as JSON.")
@click.option("--timeout", type=click.FloatRange(min=0), default=None, metavar="S",
              help="With --wait: give up after S seconds (default: wait as long as it takes).")
def enqueue(app_path: str, task_name: str, args: tuple[str, ...], kwargs_json: str | None,
            countdown: float | None, priority: int | None, queue: str | None, wait: bool,
            timeout: float | None) -> None:
    """Enqueue a task and print its id.

    With --wait, print its result as JSON instead; when the task fails, print the remote
    error and exit 1.
    """
    if timeout is not None and not wait:
        raise BadUsage("--timeout only applies with --wait")
    literal = _after_double_dash(len(args))
    values = [parse_arg(a) if i >= literal else _arg(a) for i, a in enumerate(args)]
    kwargs = _kwargs(kwargs_json)
    app = load(app_path)
    task = app.tasks.get(task_name)
    if task is None:  # `add` for `tasks.add`, when only one task ends that way
        matches = [t for name, t in app.tasks.items() if name.endswith("." + task_name)]
        if len(matches) != 1:
            raise BadUsage(_unknown_task(task_name, list(app.tasks)))
        task = matches[0]
    if wait and not task.options.store_result:
        raise BadUsage(f"task {task.name} has store_result=False: there is no result to "
                       "wait for (nothing was enqueued)")
    try:
        result = task.apply_async(values, kwargs, countdown=countdown, priority=priority,
                                  queue=queue)
    except TypeError as exc:  # the arguments do not fit the function's signature
        raise BadUsage(str(exc)) from None
    if not wait:
        click.echo(result.id)
        return
    _print_outcome(Inspector(app), result.id, timeout, value_only=True)


@click.command(epilog=APP_HELP)
@app_argument()
@click.argument("task_id")
@click.option("--wait", is_flag=True, help="Wait until the task has finished.")
@click.option("--timeout", type=click.FloatRange(min=0), default=None, metavar="S",
              help="With --wait: give up after S seconds (default: wait as long as it takes).")
def result(app_path: str, task_id: str, wait: bool, timeout: float | None) -> None:
    """Show a task's state and result.

    Exits 1 when the task failed (its error is printed on stderr).
    """
    inspector = Inspector(load(app_path))
    if wait:
        _print_outcome(inspector, task_id, timeout, value_only=False)
        return
    _show(inspector.outcome(task_id), value_only=False)


def _print_outcome(inspector: Inspector, task_id: str, timeout: float | None,
                   value_only: bool) -> None:
    try:
        outcome = inspector.outcome(task_id, wait=True, timeout=timeout)
    except WaitTimeout as exc:
        raise CliError(str(exc)) from None
    _show(outcome, value_only)


def _show(outcome: Outcome, value_only: bool) -> None:
    if outcome.error is not None:
        if not value_only:
            click.echo(f"state: {outcome.state}")
        _fail(outcome.error)
    if value_only:
        click.echo(to_json(outcome.value))
        return
    click.echo(f"state: {outcome.state}")
    if outcome.ready:
        click.echo(f"result: {to_json(outcome.value)}")


def _fail(error: TaskFailed) -> NoReturn:
    click.echo(f"error: {error.exc_type}: {error.exc_message}", err=True)
    if error.traceback:
        click.echo("\nRemote traceback:\n" + error.traceback.rstrip(), err=True)
    click.get_current_context().exit(EXIT_FAILED)


def _arg(text: str) -> Any:
    if text.startswith("-") and len(text) > 1:
        try:
            json.loads(text)
        except ValueError:
            raise BadUsage(f"no such option: {text} (to pass it as an argument, quote it as "
                           f"JSON: '\"{text}\"')") from None
    return parse_arg(text)


def _after_double_dash(count: int) -> int:
    """Index of the first ARG that came after `--` on the command line (click drops the `--`
    itself); ARGs from there on may start with '-' freely."""
    argv = sys.argv[1:]
    if "--" not in argv:
        return count
    return max(0, count - len(argv[argv.index("--") + 1:]))


def _kwargs(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise BadUsage(f"--kwargs is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadUsage(f"--kwargs must be a JSON object, not {type(value).__name__}")
    return value


def _unknown_task(name: str, known: list[str]) -> str:
    text = f"unknown task {name!r}"
    short = {k.rsplit(".", 1)[-1]: k for k in known}
    close = ([k for k in known if k.endswith("." + name)]
             or difflib.get_close_matches(name, known)
             or [short[s] for s in difflib.get_close_matches(name, list(short))])
    if close:
        return f"{text}; did you mean {', '.join(repr(c) for c in close[:3])}?"
    if not known:
        return f"{text}: the app has no tasks (is the right module imported?)"
    return f"{text} (see `conveyor tasks APP`)"
