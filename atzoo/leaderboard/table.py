"""The leaderboard table: a registry snapshot filtered, scored and sorted into rows, without gradio.

One table shows one dataset release: numbers on the 403k release, the 135k release and the
synthetic dataset are not comparable, so they never share a table. Entries that are flagged,
withdrawn or use test-time tricks (re-ranking, flip or other augmentation, query expansion) are
hidden unless asked for, and the table says how many were hidden and why.

Trust decides rank before any score does. Rows come in tiers: runner-verified (signed) entries
first, then the papers' reported rows, then submissions not verified yet; sorting by a column
re-orders rows inside their tier only. An entry whose verification ended ``mismatch`` or ``failed``
is shown below every tier, with its status and the reason, and never gets a rank.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable, Iterable

from atzoo.errors import LeaderboardError
from atzoo.formats.entry import METRICS, RELEASES, TASK_FAMILIES, Entry
from atzoo.leaderboard.store import Snapshot
from atzoo.protocol import ANY_TIME, SCENARIO_NAMES

METRIC_CHOICES = ("rank1", "mAP", "mINP")
METRIC_LABELS = {"rank1": "R1", "rank5": "R5", "rank10": "R10", "rank20": "R20", "mAP": "mAP", "mINP": "mINP"}
SCORE_COLUMNS = (ANY_TIME, *SCENARIO_NAMES)
COLUMNS = ("Rank", "Method", "ID", *SCORE_COLUMNS, "Status", "Backbone", "Task family", "Params (M)", "Flags")
SORT_CHOICES = (*SCORE_COLUMNS, "Method", "Params (M)", "Date")
DEFAULT_RELEASE = "403k"

STATUS_PAPER = "reported by paper"
STATUS_SUBMITTED = "submitted"
TIERS = ("verified", STATUS_PAPER, STATUS_SUBMITTED)
"""The ranked statuses, in rank order; any other status (mismatch, failed) is unranked."""
UNRANKED = len(TIERS)

HIDDEN_WITHDRAWN = "withdrawn"
HIDDEN_FLAGGED = "flagged"
HIDDEN_TRICKS = "use test-time tricks"


@dataclass(frozen=True)
class Filters:
    """What the table shows. Empty ``task_families``/``backbones`` mean all of them."""

    release: str = DEFAULT_RELEASE
    verified_only: bool = False
    task_families: tuple[str, ...] = ()
    backbones: tuple[str, ...] = ()
    show_flagged: bool = False
    include_tricks: bool = False
    include_withdrawn: bool = False
    search: str = ""

    def __post_init__(self) -> None:
        if self.release not in RELEASES:
            raise LeaderboardError(f"unknown dataset release {self.release!r}; expected one of {', '.join(RELEASES)}")
        object.__setattr__(self, "task_families", tuple(self.task_families or ()))
        object.__setattr__(self, "backbones", tuple(self.backbones or ()))
        object.__setattr__(self, "search", (self.search or "").strip())


@dataclass(frozen=True)
class Table:
    """The rows shown plus the entries of the release that the default view hides, by reason."""

    rows: list[dict[str, Any]]
    hidden: Counter = field(default_factory=Counter)

    @property
    def hidden_message(self) -> str:
        return hidden_message(self.hidden)


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise LeaderboardError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    return metric


def entry_status(entry: Entry) -> str:
    """``reported by paper``, ``submitted`` (not verified yet) or the verification's status."""
    if entry.origin == "paper":
        return STATUS_PAPER
    if entry.verified is None:
        return STATUS_SUBMITTED
    return entry.verified.status


def entry_tier(entry: Entry) -> int:
    """0 verified, 1 reported by a paper, 2 submitted; :data:`UNRANKED` for mismatch and failed."""
    status = entry_status(entry)
    return TIERS.index(status) if status in TIERS else UNRANKED


def hidden_reason(entry: Entry, filters: Filters) -> str | None:
    """Why the view leaves `entry` out by default (withdrawn, flagged, tricks), or None."""
    if entry.moderation.withdrawn and not filters.include_withdrawn:
        return HIDDEN_WITHDRAWN
    if entry.moderation.flagged and not filters.show_flagged:
        return HIDDEN_FLAGGED
    if entry.disclosures.uses_tricks and not filters.include_tricks:
        return HIDDEN_TRICKS
    return None


def entry_flags(entry: Entry) -> str:
    """Everything a reader must know before trusting the row, comma separated."""
    flags = []
    if entry_tier(entry) == UNRANKED and entry.verified is not None:
        flags.append(f"unranked, verification {entry.verified.status}: {entry.verified.message}")
    if entry.moderation.withdrawn:
        flags.append("withdrawn")
    if entry.moderation.flagged:
        flags.append(f"flagged: {entry.moderation.flag_reason}")
    if entry.moderation.superseded_by:
        flags.append(f"superseded by {entry.moderation.superseded_by}")
    disclosures = entry.disclosures
    if disclosures.re_ranking:
        flags.append("re-ranking")
    if disclosures.query_expansion:
        flags.append("query expansion")
    if disclosures.test_time_augmentation:
        flags.append("TTA: " + "/".join(disclosures.test_time_augmentation))
    return ", ".join(flags)


def _searchable(entry: Entry) -> str:
    parts = (entry.id, entry.method.name, entry.method.registered_name or "", entry.method.task_family,
             entry.model.backbone, entry.model.pretraining, entry.submitter)
    return " ".join(parts).lower()


def matches(entry: Entry, filters: Filters) -> bool:
    """Whether `entry` passes the user's filters (release, verified, family, backbone, search)."""
    if entry.dataset.release != filters.release:
        return False
    if filters.verified_only and entry_status(entry) != "verified":
        return False
    if filters.task_families and entry.method.task_family not in filters.task_families:
        return False
    if filters.backbones and entry.model.backbone not in filters.backbones:
        return False
    return all(word in _searchable(entry) for word in filters.search.lower().split())


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def scores(entry: Entry, metric: str) -> dict[str, float | None]:
    """Any-Time and the six scenarios of `metric`, as reported (None where not reported)."""
    values = {ANY_TIME: _round(entry.any_time[metric])}
    for name in SCENARIO_NAMES:
        values[name] = _round(getattr(entry.reported.scenario(name), metric))
    return values


def entry_row(entry: Entry, metric: str) -> dict[str, Any]:
    num_params = entry.weights.num_params if entry.weights else None
    return {
        "Rank": 0, "Method": entry.method.name, "ID": entry.id, **scores(entry, metric),
        "Status": entry_status(entry), "Backbone": entry.model.backbone, "Task family": entry.method.task_family,
        "Params (M)": None if num_params is None else round(num_params / 1e6, 2), "Flags": entry_flags(entry),
        "Date": entry.date.isoformat(), "Tier": entry_tier(entry),
    }


def _sort_key(column: str) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    def key(row: dict[str, Any]) -> tuple:
        value = row[column]
        missing = value is None or value == ""
        if column == "Method":
            return (missing, str(value).lower())
        return (missing, -value if isinstance(value, (int, float)) else "", row["Method"].lower())
    return key


def assign_ranks(rows: list[dict[str, Any]], column: str) -> None:
    """Competition ranks by tier, then by `column` highest first: equal scores of one tier share a
    rank (1, 2, 2, 4). A row without a score, or of an unranked status, has no rank."""
    ranked = [row for row in rows if row["Tier"] != UNRANKED and row[column] is not None]
    for row in rows:
        if row["Tier"] == UNRANKED or row[column] is None:
            row["Rank"] = None
            continue
        row["Rank"] = 1 + sum(1 for other in ranked if other["Tier"] < row["Tier"]
                              or (other["Tier"] == row["Tier"] and other[column] > row[column]))


def sort_rows(rows: list[dict[str, Any]], sort_by: str = ANY_TIME) -> list[dict[str, Any]]:
    """Rows in trust tiers (verified, reported, submitted, then unranked), and inside a tier by
    `sort_by`: scores, parameters and dates highest first, methods A-Z; missing last. Ranks follow
    the score sorted by, or Any-Time when sorting by something else."""
    if sort_by not in SORT_CHOICES:
        raise LeaderboardError(f"cannot sort by {sort_by!r}; expected one of {', '.join(SORT_CHOICES)}")
    if sort_by == "Date":
        ordered = sorted(rows, key=lambda row: row["Method"].lower())
        ordered.sort(key=lambda row: row["Date"], reverse=True)
    else:
        ordered = sorted(rows, key=_sort_key(sort_by))
    ordered.sort(key=lambda row: row["Tier"])
    assign_ranks(ordered, sort_by if sort_by in SCORE_COLUMNS else ANY_TIME)
    return ordered


def build_table(snapshot: Snapshot, metric: str = "rank1", filters: Filters | None = None,
                sort_by: str = ANY_TIME) -> Table:
    """The rows of one release that pass `filters`, plus the count of default-hidden entries."""
    check_metric(metric)
    filters = filters or Filters()
    rows: list[dict[str, Any]] = []
    hidden: Counter[str] = Counter()
    for entry in snapshot.entries:
        if not matches(entry, filters):
            continue
        reason = hidden_reason(entry, filters)
        if reason is not None:
            hidden[reason] += 1
            continue
        rows.append(entry_row(entry, metric))
    return Table(sort_rows(rows, sort_by), hidden)


def leaderboard_rows(snapshot: Snapshot, metric: str = "rank1", filters: Filters | None = None,
                     sort_by: str = ANY_TIME) -> list[dict[str, Any]]:
    """The table's rows (dicts keyed by :data:`COLUMNS`, plus ``Date``) for one release."""
    return build_table(snapshot, metric, filters, sort_by).rows


def hidden_message(hidden: Counter) -> str:
    """``'3 hidden: 1 flagged, 2 use test-time tricks'``, or ``''`` when nothing is hidden."""
    total = sum(hidden.values())
    if not total:
        return ""
    order = (HIDDEN_WITHDRAWN, HIDDEN_FLAGGED, HIDDEN_TRICKS)
    parts = [f"{hidden[reason]} {reason}" for reason in order if hidden[reason]]
    return f"{total} hidden: " + ", ".join(parts)


def rows_to_csv(rows: Iterable[dict[str, Any]], columns: Iterable[str] = COLUMNS) -> str:
    """The rows as CSV with a header; missing numbers are empty cells."""
    columns = list(columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if row.get(key) is None else row.get(key) for key in columns})
    return buffer.getvalue()


def task_family_choices(snapshot: Snapshot | None = None) -> list[str]:
    """The schema's task families, in its order, limited to those present when given a snapshot."""
    if snapshot is None:
        return list(TASK_FAMILIES)
    present = {entry.method.task_family for entry in snapshot.entries}
    return [family for family in TASK_FAMILIES if family in present]


def backbone_choices(snapshot: Snapshot, release: str | None = None) -> list[str]:
    """Every backbone in the registry (of one release when given), sorted."""
    return sorted({entry.model.backbone for entry in snapshot.entries
                   if release is None or entry.dataset.release == release}, key=str.lower)


def release_choices() -> list[str]:
    return list(RELEASES)


def entry_choices(snapshot: Snapshot, release: str | None = None) -> list[tuple[str, str]]:
    """(label, id) pairs for picking entries to compare: ``'Uni-AT (paper-uni-at)'``."""
    return [(f"{entry.method.name} ({entry.id})", entry.id) for entry in snapshot.entries
            if release is None or entry.dataset.release == release]
