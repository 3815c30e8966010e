"""The board as a Hugging Face dataset, and the board read back from one.

``atzoo leaderboard export-dataset OUT_DIR`` writes one Parquet row per valid entry (every release)
with typed columns: the entry's identity, release, status, trust tier and rank in its release's
default view, the verifier and signature, the weights pin, and every scenario's (and Any-Time's)
reported and verified metrics. The entry's own JSON rides along in ``entry_json`` and the
registry's ``verifiers.json`` beside the data, so an app serving the dataset
(``atzoo leaderboard serve --source DIR|ORG/NAME@REVISION``) checks each signature again rather
than trusting the table. ``datasets.load_dataset("parquet", data_files="OUT_DIR/data/*.parquet")``
loads it (the app reads the Parquet file directly, bypassing the datasets cache, which keys a local
folder by its name).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from atzoo.errors import FormatError, LeaderboardError
from atzoo.formats.atomic import permissions_from_umask, write_text_atomic
from atzoo.formats.entry import METRICS, Entry, Metrics, parse_entry_text
from atzoo.formats.verifiers import VERIFIERS, VerifiersFile, read_verifiers_file, write_verifiers_file
from atzoo.leaderboard.signing import signature_problem
from atzoo.leaderboard.store import Snapshot
from atzoo.leaderboard.table import TIERS, UNRANKED, Filters, build_table, entry_status, entry_tier
from atzoo.protocol import ANY_TIME, SCENARIO_NAMES

DATA_FILE = Path("data") / "board-00000-of-00001.parquet"
FORMAT_TAG = "atzoo-board-1"
SCORE_NAMES = (*SCENARIO_NAMES, ANY_TIME)


def metric_column(kind: str, scenario: str, metric: str) -> str:
    """``reported_dt_st_rank1``, ``verified_any_time_mAP``."""
    return f"{kind}_{scenario.lower().replace('-', '_')}_{metric}"


def features() -> Any:
    """The dataset's typed columns."""
    from datasets import Features, Value

    columns: dict[str, Any] = {
        "format": Value("string"), "id": Value("string"), "method": Value("string"),
        "task_family": Value("string"), "origin": Value("string"), "release": Value("string"),
        "status": Value("string"), "tier": Value("string"), "rank": Value("int32"), "submitter": Value("string"),
        "date": Value("string"), "backbone": Value("string"), "num_params": Value("int64"),
        "weights_repo": Value("string"), "weights_revision": Value("string"), "weights_sha256": Value("string"),
        "verifier": Value("string"), "verified_date": Value("string"), "signature": Value("string"),
        "max_difference": Value("float64"), "flagged": Value("bool"), "withdrawn": Value("bool"),
        "uses_tricks": Value("bool"),
    }
    for kind in ("reported", "verified"):
        for scenario in SCORE_NAMES:
            for metric in METRICS:
                columns[metric_column(kind, scenario, metric)] = Value("float64")
    columns["entry_json"] = Value("string")
    return Features(columns)


def _ranks(snapshot: Snapshot) -> dict[str, int | None]:
    ranks: dict[str, int | None] = {}
    for release in {entry.dataset.release for entry in snapshot.entries}:
        for row in build_table(snapshot, "rank1", Filters(release=release)).rows:
            ranks[row["ID"]] = row["Rank"]
    return ranks


def _scores(kind: str, metrics: Metrics | None) -> dict[str, float | None]:
    values: dict[str, float | None] = {}
    for scenario in SCORE_NAMES:
        for metric in METRICS:
            if metrics is None:
                value = None
            elif scenario == ANY_TIME:
                value = metrics.any_time[metric]
            else:
                value = getattr(metrics.scenario(scenario), metric)
            values[metric_column(kind, scenario, metric)] = value
    return values


def entry_record(entry: Entry, rank: int | None) -> dict[str, Any]:
    import json

    verified, weights, tier = entry.verified, entry.weights, entry_tier(entry)
    return {
        "format": FORMAT_TAG, "id": entry.id, "method": entry.method.name, "task_family": entry.method.task_family,
        "origin": entry.origin, "release": entry.dataset.release, "status": entry_status(entry),
        "tier": TIERS[tier] if tier != UNRANKED else "unranked", "rank": rank, "submitter": entry.submitter,
        "date": entry.date.isoformat(), "backbone": entry.model.backbone,
        "num_params": weights.num_params if weights else None, "weights_repo": weights.repo if weights else None,
        "weights_revision": weights.revision if weights else None,
        "weights_sha256": weights.sha256 if weights else None,
        "verifier": verified.verifier if verified else None,
        "verified_date": verified.date.isoformat() if verified else None,
        "signature": verified.signature if verified else None,
        "max_difference": verified.max_difference if verified else None,
        "flagged": entry.moderation.flagged, "withdrawn": entry.moderation.withdrawn,
        "uses_tricks": entry.disclosures.uses_tricks,
        **_scores("reported", entry.reported), **_scores("verified", verified.metrics if verified else None),
        "entry_json": json.dumps(entry.to_json(), sort_keys=True),
    }


CARD = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/*.parquet
tags:
- atzoo
- leaderboard
- person-reid
---

# atzoo leaderboard (anytime person re-identification on AT-USTC)

One row per leaderboard entry ({count} entries, releases: {releases}), exported by
`atzoo leaderboard export-dataset`. Metrics are percentages. `tier` is the trust tier (verified,
reported by paper, submitted; `unranked` for a mismatched or failed verification) and `rank` the
entry's rank in its release's default view. A verified row is signed (`signature`, by `verifier`,
whose public key is in `verifiers.json`); `entry_json` is the entry as the registry holds it.
No image, path or per-query result of AT-USTC is part of this dataset.
"""


def export_dataset(snapshot: Snapshot, out_dir: str | os.PathLike) -> Path:
    """Write the board dataset of `snapshot` into the new or empty folder `out_dir` (staged, renamed)."""
    from datasets import Dataset

    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LeaderboardError(f"{out} exists and is not an empty folder; export the dataset into a new folder")
    ranks = _ranks(snapshot)
    records = [entry_record(entry, ranks.get(entry.id)) for entry in snapshot.entries]
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        os.chmod(staged, permissions_from_umask(executable=True))
        (staged / DATA_FILE).parent.mkdir()
        Dataset.from_list(records, features=features()).to_parquet(str(staged / DATA_FILE))
        write_verifiers_file(staged / VERIFIERS, snapshot.verifiers)
        releases = ", ".join(sorted({entry.dataset.release for entry in snapshot.entries})) or "none"
        write_text_atomic(staged / "README.md", CARD.format(count=len(records), releases=releases))
        if out.exists():
            out.rmdir()
        os.replace(staged, out)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return out


# ---------------------------------------------------------------------------------------------
# reading a board dataset


def resolve_source(source: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """A local board dataset folder, or ``ORG/NAME@REVISION`` downloaded from the Hub (a dataset repo)."""
    local = Path(source)
    if local.exists():
        return local
    repo, sep, revision = source.partition("@")
    if not sep or not revision or repo.count("/") != 1:
        raise LeaderboardError(f"--source {source!r}: no such folder, and not a Hub dataset written ORG/NAME@REVISION")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo, repo_type="dataset", revision=revision,
                                      cache_dir=None if cache_dir is None else str(cache_dir)))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as error:
        raise LeaderboardError(f"--source {source!r}: the dataset cannot be fetched ({error})") from None


def load_board_dataset(folder: str | os.PathLike) -> Snapshot:
    """The board held by a dataset folder, every entry validated and its signature checked again
    against the dataset's own ``verifiers.json``."""
    import pyarrow.parquet as pq

    folder = Path(folder)
    data = folder / DATA_FILE
    if not data.is_file():
        raise LeaderboardError(f"{folder} is not an atzoo board dataset: {DATA_FILE} is missing "
                               f"(write one with `atzoo leaderboard export-dataset`)")
    try:
        verifiers = read_verifiers_file(folder / VERIFIERS) if (folder / VERIFIERS).exists() else VerifiersFile()
        table = pq.read_table(str(data))
    except FormatError:
        raise
    except Exception as error:  # noqa: BLE001 - any reader failure means the folder is not a board dataset
        raise LeaderboardError(f"{data} cannot be read as a board dataset ({type(error).__name__}: {error})") from None
    if "entry_json" not in table.column_names or "format" not in table.column_names:
        raise LeaderboardError(f"{data} is not an atzoo board dataset: it lacks the entry_json and format columns")
    entries: list[Entry] = []
    problems: dict[str, list[str]] = {}
    for row_number, row in enumerate(table.to_pylist()):
        name = f"row {row_number} ({row.get('id')})"
        if row["format"] != FORMAT_TAG:
            raise LeaderboardError(f"{data}: {name} has format {row['format']!r}; expected {FORMAT_TAG!r}")
        try:
            entry = parse_entry_text(row["entry_json"] or "", f"{data} {name}")
        except LeaderboardError as error:
            problems[name] = str(error).splitlines()
            continue
        refused = signature_problem(entry, verifiers)
        if refused:
            problems[name] = [refused]
        else:
            entries.append(entry)
    return Snapshot(folder, tuple(entries), problems, verifiers)
