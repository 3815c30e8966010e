"""One colour per verification status and per method, the same in the table and in every plot.

A method's colour comes from a fixed palette, by the method's position among all method names
of the registry (sorted), so two methods of one registry never share a colour while it holds at
most `len(METHOD_PALETTE)` of them, and a method keeps its colour whatever the view shows.
"""

from __future__ import annotations

from collections.abc import Iterable

from atzoo.leaderboard.table import STATUS_PAPER, STATUS_SUBMITTED

STATUS_COLOURS = {
    "verified": "#1a7f37",
    STATUS_PAPER: "#0969da",
    STATUS_SUBMITTED: "#6e7781",
    "mismatch": "#bc4c00",
    "failed": "#cf222e",
}
"""Text colour of each status (readable on a white and a light background)."""
UNKNOWN_STATUS_COLOUR = "#57606a"

METHOD_PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
    "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354",
    "#756bb1", "#636363",
)
"""Twenty distinct colours (matplotlib's tab10 and a darker ten)."""


def status_colour(status: str) -> str:
    return STATUS_COLOURS.get(status, UNKNOWN_STATUS_COLOUR)


class MethodColours:
    """Method name -> colour, fixed for one set of method names."""

    def __init__(self, names: Iterable[str]) -> None:
        self._colours = {name: METHOD_PALETTE[index % len(METHOD_PALETTE)]
                         for index, name in enumerate(sorted(set(names)))}

    def __call__(self, name: str) -> str:
        if name not in self._colours:
            self._colours[name] = METHOD_PALETTE[len(self._colours) % len(METHOD_PALETTE)]
        return self._colours[name]
