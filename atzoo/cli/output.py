"""The terminal the commands print to."""

from __future__ import annotations

import sys

PIPE_WIDTH = 120


def console():
    """A rich console: the terminal's width on a terminal, a fixed wide width when piped or captured,
    so tables are not squeezed into 80 columns in logs and tests."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else PIPE_WIDTH)
