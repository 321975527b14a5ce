"""The `conveyor` command line (API.md §6). Each command is thin: it loads APP, asks an
Inspector or the worker runner, and prints. Library errors become one line and an exit code:
2 for a bad APP, option or setting, 1 when the operation failed."""

from __future__ import annotations

import click

from .. import __version__
from .admin import dead, migrate, purge
from .common import ConveyorGroup
from .dashboard import dashboard
from .info import periodic, status, tasks
from .produce import enqueue, result
from .worker import worker


@click.group(cls=ConveyorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="conveyor")
def cli() -> None:
    """conveyor: a background task queue. APP is 'module' or 'module:attribute'."""


for _command in (worker, status, tasks, enqueue, result, dead, purge, periodic, migrate,
                 dashboard):
    cli.add_command(_command)


def main() -> None:
    """Console-script entry point (`conveyor`, `python -m conveyor`)."""
    cli.main(prog_name="conveyor")


__all__ = ["cli", "main"]
