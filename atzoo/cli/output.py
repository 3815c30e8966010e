"""The terminal the commands print to."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

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
