"""`python manage.py conveyor_worker [OPTIONS]`: `conveyor worker` for this project's app,
with exactly the options of `conveyor worker` (its APP is `settings.CONVEYOR`'s app)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import click
from django.core.management.base import BaseCommand, CommandError  # type: ignore[import-untyped,import-not-found,unused-ignore]

from conveyor.cli.common import BadUsage, ConveyorGroup
from conveyor.contrib import django as integration

# Django's own options, handled by manage.py before the command runs: dropped from the
# arguments handed to `conveyor worker`.
_DJANGO_FLAGS = ("--traceback", "--no-color", "--force-color", "--skip-checks")
_DJANGO_VALUES = ("--settings", "--pythonpath", "-v", "--verbosity")


def worker_command() -> click.Command:
    """`conveyor worker` without its APP argument, inside conveyor's error handling."""
    from conveyor.cli.worker import worker

    params = [p for p in worker.params if p.name != "app_path"]

    @click.pass_context
    def callback(ctx: click.Context, /, **options: Any) -> Any:
        if options.get("reload"):  # its child would be `conveyor worker`, not this command
            raise BadUsage("--reload is not available with manage.py conveyor_worker")
        return ctx.invoke(worker, app_path=integration.APP_PATH, **options)

    command = click.Command("conveyor_worker", params=params, callback=callback,
                            help=worker.help, short_help=worker.short_help)
    group = ConveyorGroup(commands={"conveyor_worker": command})
    group.context_settings = {"help_option_names": ["-h", "--help"]}
    return group


def strip_django_options(args: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in _DJANGO_FLAGS:
            continue
        if arg in _DJANGO_VALUES:
            skip = True
            continue
        if any(arg.startswith(f"{opt}=") for opt in _DJANGO_VALUES if opt.startswith("--")):
            continue
        out.append(arg)
    return out


class Command(BaseCommand):  # type: ignore[misc,unused-ignore]
    help = ("Run a conveyor worker for this project's tasks; the options are those of "
            "`conveyor worker` (-c N, --pool, -q QUEUE,..., --max-tasks-per-child, "
            "--log-level, --grace, --node, --no-scheduler).")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("worker_args", nargs=argparse.REMAINDER,
                            help="options of `conveyor worker`")

    def run_from_argv(self, argv: list[str]) -> None:
        """From the command line: click parses, prints help and errors, and exits."""
        self._before_start()
        prog = f"{os.path.basename(argv[0])} {argv[1]}"
        worker_command().main(args=["conveyor_worker", *strip_django_options(argv[2:])],
                              prog_name=prog)

    def handle(self, *args: Any, **options: Any) -> None:
        """From `call_command("conveyor_worker", "--pool", "thread", ...)`."""
        self._before_start()
        try:
            code = worker_command().main(
                args=["conveyor_worker", *strip_django_options(list(options["worker_args"]))],
                prog_name="conveyor_worker", standalone_mode=False)
        except click.ClickException as exc:
            raise CommandError(exc.format_message(), returncode=exc.exit_code) from None
        if isinstance(code, int) and code:
            raise CommandError(f"the worker exited with code {code}", returncode=code)

    def _before_start(self) -> None:
        from django.db import connections  # type: ignore[import-untyped,import-not-found,unused-ignore]

        integration.get_app()  # settings mistakes show now, as ImproperlyConfigured
        connections.close_all()  # a process pool forks: no connection may be shared
        sys.stdout.flush()
