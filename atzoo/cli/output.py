"""The terminal the commands print to."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from typing import Any
from collections.abc import Iterator

import click

from atzoo.errors import AtzooError

PIPE_WIDTH = 120


def console():
    """A rich console: the terminal's width on a terminal, a fixed wide width when piped or captured,
    so tables are not squeezed into 80 columns in logs and tests."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else PIPE_WIDTH)


def print_metrics(metrics: dict[str, Any], as_json: bool) -> None:
    """An evaluation result as JSON on stdout, or as the six-scenario and mixed-test tables."""
    from atzoo.evaluation.report import print_results

    if as_json:
        click.echo(json.dumps(metrics, indent=2))
    else:
        print_results(metrics, console())


def format_elapsed(seconds: float) -> str:
    """12.3 s, 2 min 05 s, 1 h 02 min."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def echo_elapsed(command: str, started: float) -> None:
    """How long ``command`` took since ``started`` (`time.perf_counter`), on stderr: stdout may carry JSON."""
    click.echo(f"{command} finished in {format_elapsed(time.perf_counter() - started)}", err=True)


@contextlib.contextmanager
def elapsed(command: str) -> Iterator[None]:
    """`echo_elapsed` once the block succeeded."""
    started = time.perf_counter()
    yield
    echo_elapsed(command, started)


class UserError(click.ClickException):
    """An `AtzooError` shown as one line with exit status 2, also when a sub-command group is invoked
    on its own (as in tests), not through `atzoo.cli.main.main`."""

    exit_code = 2


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except AtzooError as error:
        raise UserError(str(error)) from None
