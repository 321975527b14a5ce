"""What every command shares: loading APP, turning library errors into one-line exits, and
small formatting helpers. No command logic lives here."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..errors import BackendUnavailable, ConfigError, ConveyorError

if TYPE_CHECKING:
    from ..app import Conveyor

# Exit codes: 0 done, 1 the operation failed (backend down, task failed), 2 bad usage or config.
EXIT_FAILED = 1
EXIT_USAGE = 2

FC = TypeVar("FC", bound=Callable[..., Any] | click.Command)

APP_HELP = "APP is 'module' or 'module:attribute' naming a Conveyor."


class CliError(click.ClickException):
    """The operation failed: one line on stderr, exit 1, never a traceback."""

    exit_code = EXIT_FAILED


class BadUsage(CliError):
    """A bad APP, option or setting: one line on stderr, exit 2."""

    exit_code = EXIT_USAGE


class ConveyorGroup(click.Group):
    """A click group that maps conveyor's errors to one-line messages and exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            raise BadUsage(str(exc)) from None
        except BackendUnavailable as exc:
            raise CliError(f"backend unavailable: {exc}") from None
        except ConveyorError as exc:
            raise CliError(f"{type(exc).__name__}: {exc}") from None


def app_argument() -> Callable[[FC], FC]:
    return click.argument("app_path", metavar="APP")


def load(app_path: str) -> Conveyor:
    """Import APP; a ConfigError becomes a one-line exit 2 through ConveyorGroup."""
    from ..loader import load_app

    return load_app(app_path)


def to_json(value: Any) -> str:
    """JSON for printing; values JSON cannot hold (msgpack bytes, pickled objects) as repr."""
    return json.dumps(value, ensure_ascii=False, default=repr)


def parse_arg(text: str) -> Any:
    """A command-line ARG: JSON when it parses (`2`, `[1, 2]`, `'"2"'`), else the plain text."""
    try:
        return json.loads(text, parse_constant=_not_json)
    except ValueError:
        return text


def _not_json(name: str) -> Any:
    """NaN and Infinity are not JSON (Python's parser accepts them): read them as text."""
    raise ValueError(f"{name} is not JSON")




def table(header: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[int] = ()) -> str:
    """Plain aligned columns; the last column is never padded. `right`: indices of numeric
    columns to right-align."""
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for r in cells:
        parts = []
        for i, c in enumerate(r):
            if i == len(r) - 1 and i not in right:
                parts.append(c)
            elif i in right:
                parts.append(c.rjust(widths[i]))
            else:
                parts.append(c.ljust(widths[i]))
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)
