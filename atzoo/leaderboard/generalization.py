"""The Generalization board: entries' zero-shot results on public datasets.

A row shows the paper's average (R1 and mAP over Market-1501, CUHK03, SYSU-MM01, PRCC, LTCC) and
each dataset's headline figure. A verified entry shows the figures the runner re-measured (and
which reported datasets it could not re-measure); other entries show what they report. Rows rank
by trust tier (verified, reported by a paper, submitted), then average rank-1; a mismatched or
failed verification is shown unranked, as on the AT-USTC board.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from atzoo.formats.entry import CROSS_DATASETS, CrossDatasetResults, Entry
from atzoo.leaderboard.store import Snapshot
from atzoo.leaderboard.table import DEFAULT_RELEASE, UNRANKED, Filters, entry_status, entry_tier, hidden_reason

DATASET_TITLES = {"market1501": "Market-1501", "cuhk03": "CUHK03", "msmt17": "MSMT17", "sysu-mm01": "SYSU-MM01",
                  "regdb": "RegDB", "llcm": "LLCM", "prcc": "PRCC", "ltcc": "LTCC", "deepchange": "DeepChange",
                  "vc-clothes": "VC-Clothes"}
AVERAGE = "Average"
GENERALIZATION_COLUMNS = ("Rank", "Method", "ID", "Status", "Figures", "Avg R1", "Avg mAP",
                          *(DATASET_TITLES[name] for name in CROSS_DATASETS))


@dataclass(frozen=True)
class CrossFigures:
    """What a row shows for one entry: the results and whether the runner measured them."""

    entry: Entry
    results: CrossDatasetResults
    verified: bool
    unavailable: tuple[str, ...] = ()

    def value(self, dataset: str, metric: str) -> float | None:
        """`metric` of `dataset` (or of ``AVERAGE``), None when the entry has no such figure."""
        if dataset == AVERAGE:
            average = self.results.paper_average()
            return None if average is None else average[metric]
        figures = self.results.datasets.get(dataset)
        return None if figures is None else getattr(figures, metric)


def cross_figures(entry: Entry) -> CrossFigures | None:
    verified = entry.verified
    if verified is not None and verified.status == "verified" and verified.cross_dataset is not None:
        return CrossFigures(entry, verified.cross_dataset, True, tuple(verified.cross_unavailable))
    if entry.cross_dataset is None:
        return None
    return CrossFigures(entry, entry.cross_dataset, False)


def _cell(figures: CrossFigures, dataset: str) -> str:
    rank1, mean_ap = figures.value(dataset, "rank1"), figures.value(dataset, "mAP")
    return "" if rank1 is None or mean_ap is None else f"{rank1:.2f} / {mean_ap:.2f}"


def _figures_label(figures: CrossFigures) -> str:
    if not figures.verified:
        return "reported"
    missing = f", not re-measured: {', '.join(figures.unavailable)}" if figures.unavailable else ""
    return f"verified{missing}"


def generalization_entries(snapshot: Snapshot, release: str = DEFAULT_RELEASE) -> list[CrossFigures]:
    """Entries of `release` with cross-dataset figures, shown by default (not withdrawn, flagged or
    using test-time tricks), in board order."""
    filters = Filters(release=release)
    shown = [figures for entry in snapshot.entries
             if entry.dataset.release == release and hidden_reason(entry, filters) is None
             and (figures := cross_figures(entry)) is not None]

    def order(figures: CrossFigures) -> tuple:
        average = figures.value(AVERAGE, "rank1")
        return entry_tier(figures.entry), average is None, -(average or 0.0), figures.entry.id

    return sorted(shown, key=order)


def generalization_rows(snapshot: Snapshot, release: str = DEFAULT_RELEASE) -> list[dict[str, Any]]:
    """One dict per row, keyed by ``GENERALIZATION_COLUMNS``; ties on average R1 share a rank."""
    rows = []
    rank, previous = 0, None
    for position, figures in enumerate(generalization_entries(snapshot, release), start=1):
        entry = figures.entry
        average_r1, average_map = figures.value(AVERAGE, "rank1"), figures.value(AVERAGE, "mAP")
        ranked = entry_tier(entry) != UNRANKED and average_r1 is not None
        key = (entry_tier(entry), average_r1)
        if ranked and key != previous:
            rank, previous = position, key
        row: dict[str, Any] = {"Rank": rank if ranked else None, "Method": entry.method.name, "ID": entry.id,
                               "Status": entry_status(entry), "Figures": _figures_label(figures),
                               "Avg R1": None if average_r1 is None else round(average_r1, 2),
                               "Avg mAP": None if average_map is None else round(average_map, 2)}
        for name in CROSS_DATASETS:
            row[DATASET_TITLES[name]] = _cell(figures, name)
        rows.append(row)
    return rows
