"""The exit-code contract every command runs under, and the app the commands register on.

A user mistake (any :class:`study.errors.UserError`) ends with exit status 2 and one line that
says what to do (:func:`fail`); any other exception is a bug and ends with its traceback and exit
status 1. Exits, aborts and Ctrl-C pass through. Stores a command opens are closed when it ends,
however it ends (:func:`close_at_exit`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

import click
import typer
from rich.console import Console
from rich.markup import escape

from study.errors import UserError

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Tune warns whenever a driver-loop step takes over 0.5 s ("may be a performance bottleneck"):
# on a busy laptop that is every few seconds and nothing a user can act on. Read at import.
os.environ.setdefault("TUNE_WARN_THRESHOLD_S", "10")

F = TypeVar("F", bound=Callable[..., Any])
# The longest error line: every message cuts the values it quotes; this cuts what slips past.
MAX_ERROR_CHARS = 1000


_open_resources: list[contextlib.ExitStack] = []


@contextlib.contextmanager
def _closing_at_exit() -> Iterator[None]:
    """Stores opened by a command are closed when it ends, however it ends: SQLite removes its
    -wal and -shm files only when the last connection closes."""
    with contextlib.ExitStack() as stack:
        _open_resources.append(stack)
        try:
            yield
        finally:
            _open_resources.pop()


def close_at_exit(close: Callable[[], Any]) -> None:
    """Call ``close`` when the running command ends."""
    if _open_resources:
        _open_resources[-1].callback(close)


def _guarded(function: F) -> F:
    """Run a command: a UserError becomes one line and exit 2; anything else is a bug, shown
    with its traceback, exit 1. Exits, aborts and Ctrl-C pass through."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with _closing_at_exit():
                return function(*args, **kwargs)
        except (typer.Exit, typer.Abort, click.exceptions.Exit, click.ClickException):
            raise  # typer's Exit is its own class, not click's
        except UserError as error:
            fail(str(error))
        except Exception:
            traceback.print_exc(file=sys.stderr)
            error_console.print(
                "[bold red]internal error[/] (a bug in zoneout-study, not in your input): "
                "please report it with the traceback above",
                highlight=False,
            )
            raise typer.Exit(code=1) from None

    return wrapper  # type: ignore[return-value]


class _Typer(typer.Typer):
    """A Typer app whose every command runs under :func:`_guarded`."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[F], F]:
        register = super().command(*args, **kwargs)

        def decorator(function: F) -> F:
            register(_guarded(function))
            return function

        return decorator


def sub_app(help_text: str) -> typer.Typer:
    """A group of commands (``zoneout-study db ...``), each run under :func:`_guarded`."""
    return _Typer(help=help_text, no_args_is_help=True)


app = _Typer(
    name="zoneout-study",
    help="Hyperparameter studies for zoneout RNNs: Optuna suggests, Ray Tune schedules, "
    "one SQL database keeps every trial and epoch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Standard output prints names, paths, reasons and values that come from files and databases:
# rich markup in them (a `[bold]` in a directory name, a `d[` in a path) is text, never style.
# Error lines keep markup for their own prefix and escape what they quote.
console = Console(markup=False)
error_console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """Hyperparameter studies for zoneout RNNs."""


def terminal_safe(text: str) -> str:
    """``text`` with its control characters (an escape sequence that clears the screen, a
    newline that splits a row) written out as escapes: the terminal shows names and reasons
    from databases and files, which any program or client may have written."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


def fail(message: str) -> NoReturn:
    """One clear line and exit status 2: the contract for every user error."""
    # One line, whatever the message carried: no control characters (a name from a database
    # may hold an escape sequence), and never longer than a screenful however long the values
    # it quotes (each message cuts its own; this is the backstop).
    from trials.config import cut_text

    line = cut_text(terminal_safe(" ".join(message.split())), MAX_ERROR_CHARS, middle=True)
    # The message is the user's words (a key, a path, a YAML fragment): never read as markup.
    error_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def main() -> None:
    """Console-script entry point: the app with every command registered (``study.cli``
    imports the command modules)."""
    try:
        app()
    except KeyboardInterrupt:
        error_console.print("interrupted")
        sys.exit(130)
