"""The Compare tab's figures, drawn with matplotlib's object API (no pyplot state, thread safe).

Each function takes entries and a metric and returns a :class:`matplotlib.figure.Figure` that
``gr.Plot`` shows. A figure with nothing to draw says so in its middle instead of staying blank.
A method is drawn in its colour (`atzoo.app.colours`), the one the table shows it in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.projections.polar import PolarAxes

from atzoo.app.colours import MethodColours, status_colour
from atzoo.formats.entry import Entry
from atzoo.leaderboard.table import METRIC_LABELS, check_metric
from atzoo.protocol import ANY_TIME, SCENARIO_NAMES, SCENARIOS

FIGSIZE = (6.4, 4.4)
GAP_LABELS = ("short-term - long-term", "day - night")
NOTHING_SELECTED = "Select at least one entry above"


def _empty(title: str, message: str) -> Figure:
    figure = Figure(figsize=FIGSIZE, layout="constrained")
    axes = figure.add_subplot()
    axes.set_title(title)
    axes.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=11, color="0.35",
              transform=axes.transAxes)
    axes.set_xticks([])
    axes.set_yticks([])
    return figure


def _nothing_to_draw(title: str, entries: Sequence[Entry], metric: str) -> Figure:
    if not entries:
        return _empty(title, NOTHING_SELECTED)
    return _empty(title, f"Select entries that report {METRIC_LABELS[metric]} for all six scenarios")


def _label(metric: str) -> str:
    return f"{METRIC_LABELS[metric]} (%)"


def scenario_values(entry: Entry, metric: str) -> list[float] | None:
    """The six reported scenario values of `metric`, or None when any is missing."""
    values = [getattr(entry.reported.scenario(name), metric) for name in SCENARIO_NAMES]
    return None if any(v is None for v in values) else [float(v) for v in values]


def _with_values(entries: Sequence[Entry], metric: str) -> list[tuple[Entry, list[float]]]:
    pairs = [(entry, scenario_values(entry, metric)) for entry in entries]
    return [(entry, values) for entry, values in pairs if values is not None]


def _colours(entries: Sequence[Entry], colours: MethodColours | None) -> MethodColours:
    return colours or MethodColours(entry.method.name for entry in entries)


def radar_plot(entries: Sequence[Entry], metric: str = "rank1", colours: MethodColours | None = None) -> Figure:
    """The six scenarios of each entry on one polar chart (one closed line per entry)."""
    check_metric(metric)
    colours = _colours(entries, colours)
    title = f"Six scenarios, {METRIC_LABELS[metric]}"
    drawable = _with_values(entries, metric)
    if not drawable:
        return _nothing_to_draw(title, entries, metric)
    angles = np.linspace(0, 2 * math.pi, len(SCENARIO_NAMES), endpoint=False)
    closed = np.append(angles, angles[0])
    figure = Figure(figsize=FIGSIZE, layout="constrained")
    axes = figure.add_subplot(projection="polar")
    assert isinstance(axes, PolarAxes)
    axes.set_theta_offset(math.pi / 2)
    axes.set_theta_direction(-1)
    for entry, values in drawable:
        line = np.append(values, values[0])
        colour = colours(entry.method.name)
        axes.plot(closed, line, linewidth=1.6, label=entry.method.name, color=colour)
        axes.fill(closed, line, alpha=0.08, color=colour)
    axes.set_xticks(angles, SCENARIO_NAMES)
    axes.set_ylim(0, 100)
    axes.set_title(title)
    axes.legend(loc="upper left", bbox_to_anchor=(1.05, 1.0), fontsize=8, frameon=False)
    return figure


def gaps(values: Sequence[float]) -> tuple[float, float]:
    """(mean short-term - mean long-term, mean day - mean night) of six scenario values."""
    by_name = dict(zip(SCENARIO_NAMES, values))
    short = np.mean([by_name[s.name] for s in SCENARIOS if s.term == "ST"])
    long = np.mean([by_name[s.name] for s in SCENARIOS if s.term == "LT"])
    day = np.mean([by_name[s.name] for s in SCENARIOS if s.time == "DT"])
    night = np.mean([by_name[s.name] for s in SCENARIOS if s.time == "NT"])
    return float(short - long), float(day - night)


def gap_plot(entries: Sequence[Entry], metric: str = "rank1", colours: MethodColours | None = None) -> Figure:
    """Per entry, how much is lost when clothes change (ST - LT) and when night falls (DT - NT);
    each entry's name is written in its method's colour."""
    check_metric(metric)
    colours = _colours(entries, colours)
    title = f"Gaps in percentage points, {METRIC_LABELS[metric]}"
    drawable = _with_values(entries, metric)
    if not drawable:
        return _nothing_to_draw(title, entries, metric)
    names = [entry.method.name for entry, _ in drawable]
    values = np.array([gaps(v) for _, v in drawable])
    positions = np.arange(len(names))
    height = 0.38
    figure = Figure(figsize=(FIGSIZE[0], max(2.6, 0.5 * len(names) + 1.6)), layout="constrained")
    axes = figure.add_subplot()
    for column, label in enumerate(GAP_LABELS):
        bars = axes.barh(positions + (column - 0.5) * height, values[:, column], height, label=label)
        axes.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    axes.set_yticks(positions, names)
    for tick in axes.get_yticklabels():
        tick.set_color(colours(tick.get_text()))
    axes.invert_yaxis()
    axes.axvline(0, color="0.3", linewidth=0.8)
    axes.set_xlabel(f"gap in {METRIC_LABELS[metric]} (percentage points, larger = bigger drop)")
    axes.set_title(title)
    figure.legend(fontsize=8, loc="outside lower center", ncols=2, frameon=False)
    return figure


def verified_pairs(entry: Entry, metric: str) -> list[tuple[float, float]]:
    """(reported, verified) for every scenario where both carry `metric`."""
    if entry.verified is None or entry.verified.metrics is None:
        return []
    pairs = []
    for name in SCENARIO_NAMES:
        reported = getattr(entry.reported.scenario(name), metric)
        verified = getattr(entry.verified.metrics.scenario(name), metric)
        if reported is not None and verified is not None:
            pairs.append((float(reported), float(verified)))
    return pairs


def reported_vs_verified_plot(entries: Sequence[Entry], metric: str = "rank1",
                              colours: MethodColours | None = None) -> Figure:
    """Verified against reported, one point per scenario, with y = x and the tolerance band; points
    in the method's colour, outlined in the colour of the verification's status."""
    check_metric(metric)
    colours = _colours(entries, colours)
    title = f"Reported vs verified, {METRIC_LABELS[metric]}"
    if not entries:
        return _empty(title, NOTHING_SELECTED)
    drawable = [(entry, entry.verified, verified_pairs(entry, metric)) for entry in entries]
    drawable = [(entry, verified, pairs) for entry, verified, pairs in drawable if verified is not None and pairs]
    if not drawable:
        return _empty(title, "No verified entries among those selected yet:\n"
                             "`atzoo leaderboard verify` re-evaluates submitted weights")
    tolerance = max(verified.tolerance for _, verified, _ in drawable if verified is not None)
    figure = Figure(figsize=FIGSIZE, layout="constrained")
    axes = figure.add_subplot()
    line = np.array([0.0, 100.0])
    axes.fill_between(line, line - tolerance, line + tolerance, color="tab:green", alpha=0.15,
                      label=f"tolerance +/- {tolerance:g} points")
    axes.plot(line, line, color="0.3", linewidth=0.9, linestyle="--", label="y = x")
    for entry, verified, pairs in drawable:
        xs, ys = zip(*pairs)
        status = verified.status if verified is not None else ""
        axes.scatter(xs, ys, s=28, label=f"{entry.method.name} ({status})",
                     color=colours(entry.method.name), edgecolors=status_colour(status), linewidths=1.4)
    axes.set_xlim(0, 100)
    axes.set_ylim(0, 100)
    axes.set_aspect("equal")
    axes.set_xlabel(f"reported {_label(metric)}")
    axes.set_ylabel(f"verified {_label(metric)}")
    axes.set_title(title)
    axes.legend(fontsize=7, loc="upper left")
    return figure


def anytime_vs_params_plot(entries: Sequence[Entry], metric: str = "rank1",
                           colours: MethodColours | None = None) -> Figure:
    """Any-Time against parameter count (log scale) for entries whose weights are known."""
    check_metric(metric)
    colours = _colours(entries, colours)
    title = f"{ANY_TIME} {METRIC_LABELS[metric]} vs parameters"
    if not entries:
        return _empty(title, NOTHING_SELECTED)
    points = [(weights.num_params / 1e6, score, entry.method.name)
              for entry in entries for weights, score in [(entry.weights, entry.any_time[metric])]
              if weights is not None and score is not None]
    if not points:
        return _empty(title, "None of the selected entries has weights with a parameter count\n"
                             "(the paper's rows publish no weights)")
    figure = Figure(figsize=FIGSIZE, layout="constrained")
    axes = figure.add_subplot()
    for millions, score, name in points:
        axes.scatter([millions], [score], s=36, color=colours(name))
        axes.annotate(name, (millions, score), textcoords="offset points", xytext=(4, 4), fontsize=8,
                      color=colours(name))
    axes.set_xscale("log")
    axes.set_xlabel("parameters (millions, log scale)")
    axes.set_ylabel(f"{ANY_TIME} {_label(metric)}")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    return figure
