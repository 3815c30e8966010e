"""Rich tables of an evaluation result: the six scenarios with Any-Time, and the mixed test."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from atzoo.evaluation.metrics import METRIC_KEYS
from atzoo.evaluation.scenarios import MIXED_GROUPS
from atzoo.protocol import ANY_TIME, SCENARIO_NAMES

COLUMN_TITLES = {"rank1": "R1", "rank5": "R5", "rank10": "R10", "rank20": "R20", "mAP": "mAP", "mINP": "mINP"}


def _table(title: str, rows: list[tuple[str, dict[str, Any]]]) -> Table:
    table = Table(title=title)
    table.add_column("scenario")
    for key in METRIC_KEYS:
        table.add_column(COLUMN_TITLES[key], justify="right")
    table.add_column("queries", justify="right")
    for name, values in rows:
        queries = values.get("queries")
        table.add_row(name, *(f"{100 * values[key]:.2f}" for key in METRIC_KEYS),
                      "" if queries is None else str(queries))
    return table


def print_results(result: dict[str, Any], console: Console | None = None) -> None:
    """Metrics in percent with two decimals; the mixed table only if the result has one."""
    console = console or Console()
    rows = [(name, result[name]) for name in SCENARIO_NAMES + (ANY_TIME,) if name in result]
    console.print(_table(f"AT-USTC six scenarios (protocol {result.get('protocol_version', '?')})", rows))
    mixed = result.get("mixed")
    if mixed:
        names = SCENARIO_NAMES + tuple(MIXED_GROUPS)
        console.print(_table("Mixed test (AD-LT feature, weighted by valid queries)",
                             [(name, mixed[name]) for name in names if name in mixed]))


def print_comparison(before: dict[str, Any], after: dict[str, Any], labels: tuple[str, str],
                     console: Console | None = None) -> None:
    """Rank-1 and mAP of two results side by side, per scenario and Any-Time, with the gain."""
    console = console or Console()
    table = Table(title=f"{labels[1]} vs {labels[0]} (R1 / mAP, %)")
    table.add_column("scenario")
    for label in labels:
        table.add_column(f"{label} R1", justify="right")
        table.add_column(f"{label} mAP", justify="right")
    table.add_column("R1 gain", justify="right")
    for name in SCENARIO_NAMES + (ANY_TIME,):
        cells = [f"{100 * result[name][key]:.2f}" for result in (before, after) for key in ("rank1", "mAP")]
        table.add_row(name, *cells, f"{100 * (after[name]['rank1'] - before[name]['rank1']):+.2f}")
    console.print(table)
