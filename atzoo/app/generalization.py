"""The app's Generalization view: the zero-shot board and its per-dataset plot."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import gradio as gr
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from atzoo.formats.entry import CROSS_DATASETS
from atzoo.leaderboard.generalization import (AVERAGE, DATASET_TITLES, GENERALIZATION_COLUMNS, CrossFigures,
                                              generalization_entries, generalization_rows)
from atzoo.leaderboard.store import Snapshot
from atzoo.leaderboard.table import DEFAULT_RELEASE, METRIC_LABELS, check_metric

FIGSIZE = (9.6, 4.4)
INTRO = ("Zero-shot generalization: models trained on AT-USTC, tested with no further training on public "
         "datasets, each with its own protocol (`atzoo evaluate RUN --cross NAME=ROOT`, see "
         "docs/generalization.md). **Average** = the paper's mean over Market-1501, CUHK03, SYSU-MM01, PRCC "
         "and LTCC; cells are R1 / mAP in percent.")


def generalization_table(snapshot: Snapshot, release: str = DEFAULT_RELEASE) -> pd.DataFrame:
    rows = generalization_rows(snapshot, release)
    return pd.DataFrame([[row[c] for c in GENERALIZATION_COLUMNS] for row in rows],
                        columns=list(GENERALIZATION_COLUMNS))


def generalization_plot(figures: Sequence[CrossFigures], metric: str = "rank1") -> Figure:
    """Grouped bars: one group per dataset any entry has a figure for, plus the average; one bar
    per entry (missing figures are gaps)."""
    check_metric(metric)
    figure = Figure(figsize=FIGSIZE, layout="constrained")
    axes = figure.add_subplot()
    title = f"Zero-shot {METRIC_LABELS[metric]} per dataset"
    groups = [name for name in CROSS_DATASETS if any(f.value(name, metric) is not None for f in figures)]
    groups.append(AVERAGE)
    drawable = [f for f in figures if any(f.value(g, metric) is not None for g in groups)]
    axes.set_title(title)
    if not drawable:
        axes.text(0.5, 0.5, "No entry reports cross-dataset results", ha="center", va="center",
                  transform=axes.transAxes, color="0.35")
        axes.set_xticks([])
        axes.set_yticks([])
        return figure
    width = 0.8 / len(drawable)
    x = np.arange(len(groups))
    for index, figures_of_entry in enumerate(drawable):
        values = [figures_of_entry.value(g, metric) for g in groups]
        heights = [np.nan if v is None else v for v in values]
        label = figures_of_entry.entry.method.name + (" (verified)" if figures_of_entry.verified else "")
        axes.bar(x - 0.4 + width * (index + 0.5), heights, width, label=label)
    axes.set_xticks(x, [DATASET_TITLES.get(g, g) for g in groups], rotation=20)
    axes.set_ylabel(f"{METRIC_LABELS[metric]} (%)")
    axes.set_ylim(0, 100)
    axes.legend(fontsize=8, loc="upper right")
    return figure


def generalization_view(snapshot: Snapshot, metric: str, release: str) -> tuple[pd.DataFrame, Figure, str]:
    """The table, the plot and a line saying how many entries it shows."""
    release = release or DEFAULT_RELEASE
    figures = generalization_entries(snapshot, release)
    count = len(figures)
    summary = (f"**{count} entr{'y' if count == 1 else 'ies'}** with cross-dataset results on the {release} "
               "release." if count else f"No entry of the {release} release reports cross-dataset results yet.")
    return generalization_table(snapshot, release), generalization_plot(figures, metric or "rank1"), summary


def generalization_tab(snapshot_of: Callable[[], Snapshot], blocks: gr.Blocks, releases: Sequence[str],
                       shown_in_page: Callable[[Callable], Callable]) -> None:
    """The tab's components and events; `snapshot_of()` reads the registry on every request."""
    gr.Markdown(INTRO)
    with gr.Row():
        metric = gr.Radio([(METRIC_LABELS[m], m) for m in ("rank1", "mAP")], value="rank1", label="Plotted metric",
                          elem_id="gen-metric")
        release = gr.Dropdown(list(releases), value=DEFAULT_RELEASE, label="AT-USTC release of the training",
                              elem_id="gen-release")
    summary = gr.Markdown(elem_id="gen-summary")
    table = gr.Dataframe(interactive=False, wrap=True, elem_id="gen-table")
    plot = gr.Plot(show_label=False, elem_id="gen-plot")

    def view(metric_value: str, release_value: str) -> tuple[pd.DataFrame, Figure, str]:
        return generalization_view(snapshot_of(), metric_value, release_value)

    gr.on([blocks.load, metric.change, release.change], shown_in_page(view), [metric, release],
          [table, plot, summary], api_name="generalization")
