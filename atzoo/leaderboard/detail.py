"""One entry whole: what `atzoo leaderboard show` prints and the app's detail view renders.

Who submitted and who verified it, when, with which atzoo/torch versions and device, the signature
and its verifier, the pinned weights link, the dataset and evaluator, the disclosures and notes,
and reported vs verified per scenario with the difference.
"""

from __future__ import annotations

import difflib
from typing import Any

from atzoo.errors import LeaderboardError
from atzoo.formats.entry import METRICS, Entry
from atzoo.leaderboard.signing import signature_problem
from atzoo.leaderboard.store import Snapshot
from atzoo.leaderboard.table import TIERS, Filters, build_table, entry_flags, entry_status, entry_tier
from atzoo.protocol import ANY_TIME, SCENARIO_NAMES

HUB = "https://huggingface.co"
URL_PARAMETER = "entry"


def weights_link(entry: Entry) -> str | None:
    """The weights file at its pinned commit on the Hub."""
    weights = entry.weights
    if weights is None:
        return None
    return f"{HUB}/{weights.repo}/blob/{weights.revision}/{weights.filename}"


def unknown_entry_message(entry_id: str, snapshot: Snapshot) -> str:
    """No such entry: say so, with the closest ids, or why the file of that id was refused."""
    refused = snapshot.problems.get(f"{entry_id}.json")
    if refused:
        return f"entry {entry_id!r} is not shown: its file was refused: {'; '.join(refused)}"
    close = difflib.get_close_matches(entry_id, snapshot.ids, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `atzoo leaderboard list` shows the ids"
    return f"no entry {entry_id!r} in the registry {snapshot.root}{hint}"


def find_entry(snapshot: Snapshot, entry_id: str) -> Entry:
    for entry in snapshot.entries:
        if entry.id == entry_id:
            return entry
    raise LeaderboardError(unknown_entry_message(entry_id, snapshot))


def _rank(entry: Entry, snapshot: Snapshot) -> int | None:
    filters = Filters(release=entry.dataset.release, show_flagged=True, include_tricks=True, include_withdrawn=True)
    rows = build_table(snapshot, "rank1", filters).rows
    return next((row["Rank"] for row in rows if row["ID"] == entry.id), None)


def scenario_rows(entry: Entry) -> list[dict[str, Any]]:
    """Per scenario (and Any-Time) and metric: reported, verified and verified - reported."""
    verified = entry.verified.metrics if entry.verified is not None else None
    rows = []
    for name in (*SCENARIO_NAMES, ANY_TIME):
        for metric in METRICS:
            if name == ANY_TIME:
                reported = entry.any_time[metric]
                measured = verified.any_time[metric] if verified is not None else None
            else:
                reported = getattr(entry.reported.scenario(name), metric)
                measured = getattr(verified.scenario(name), metric) if verified is not None else None
            if reported is None and measured is None:
                continue
            difference = None if reported is None or measured is None else round(measured - reported, 2)
            rows.append({"scenario": name, "metric": metric, "reported": _round(reported),
                         "verified": _round(measured), "difference": difference})
    return rows


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _verification(entry: Entry, snapshot: Snapshot) -> dict[str, Any] | None:
    verified = entry.verified
    if verified is None:
        return None
    problem = signature_problem(entry, snapshot.verifiers)
    listed = snapshot.verifiers.by_name().get(verified.verifier)
    return {
        "status": verified.status, "date": verified.date.isoformat(), "verifier": verified.verifier,
        "verifier_added": listed.added.isoformat() if listed else None,
        "signature": "valid" if problem is None else f"invalid: {problem}",
        "tolerance": verified.tolerance, "max_difference": verified.max_difference,
        "environment": dict(verified.environment), "message": verified.message,
    }


def entry_detail(snapshot: Snapshot, entry_id: str) -> dict[str, Any]:
    """Everything about one entry, as plain JSON-ready data."""
    entry = find_entry(snapshot, entry_id)
    tier = entry_tier(entry)
    data = entry.to_json()
    return {
        "id": entry.id, "method": data["method"], "origin": entry.origin, "submitter": entry.submitter,
        "date": entry.date.isoformat(), "links": data["links"],
        "status": entry_status(entry), "tier": TIERS[tier] if tier < len(TIERS) else "unranked",
        "rank": _rank(entry, snapshot), "flags": entry_flags(entry),
        "weights": None if entry.weights is None else {**data["weights"], "link": weights_link(entry)},
        "model": data["model"], "dataset": data["dataset"], "disclosures": data["disclosures"],
        "moderation": data["moderation"], "verification": _verification(entry, snapshot),
        "scenarios": scenario_rows(entry), "url_query": f"?{URL_PARAMETER}={entry.id}",
    }


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def detail_markdown(detail: dict[str, Any]) -> str:
    """The detail as Markdown (the app's detail view)."""
    method = detail["method"]
    lines = [f"## {method['name']} (`{detail['id']}`)", "",
             f"**{detail['status']}** - tier: {detail['tier']}, rank: {detail['rank'] or 'none'}"
             + (f" - {detail['flags']}" if detail["flags"] else ""), "",
             f"Submitted by {detail['submitter']} on {detail['date']} ({detail['origin']}); task family "
             f"{method['task_family']}" + (f", registered as `{method['registered_name']}`"
                                          if method.get("registered_name") else "") + "."]
    weights = detail["weights"]
    if weights:
        lines += ["", f"Weights: [{weights['repo']}@{weights['revision'][:12]}/{weights['filename']}]"
                      f"({weights['link']}), sha256 `{weights['sha256']}`, {weights['num_params']:,} parameters."]
    dataset = detail["dataset"]
    lines += ["", f"Dataset: release **{dataset['release']}**, protocol {dataset['protocol_version']}, evaluator "
                  f"{dataset['evaluator_version']}" + (f", fingerprint `{dataset['fingerprint']}`"
                                                         if dataset.get("fingerprint") else "") + "."]
    verification = detail["verification"]
    if verification:
        environment = ", ".join(f"{k} {v}" for k, v in verification["environment"].items())
        lines += ["", f"Verification: **{verification['status']}** on {verification['date']} by "
                      f"**{verification['verifier'] or 'nobody'}** (signature {verification['signature']}); "
                      f"tolerance {verification['tolerance']} points, max difference "
                      f"{_cell(verification['max_difference'])}; {environment}. {verification['message']}"]
    else:
        lines += ["", "Not verified by the shared runner."]
    disclosures = detail["disclosures"]
    tricks = [name for name, on in (("re-ranking", disclosures["re_ranking"]),
                                    ("query expansion", disclosures["query_expansion"])) if on]
    tricks += [f"TTA {kind}" for kind in disclosures["test_time_augmentation"]]
    lines += ["", f"Disclosures: {', '.join(tricks) or 'no test-time tricks'}."]
    if disclosures["notes"]:
        lines += ["", f"Notes: {disclosures['notes']}"]
    lines += ["", "| scenario | metric | reported | verified | verified - reported |", "|---|---|---|---|---|"]
    lines += [f"| {row['scenario']} | {row['metric']} | {_cell(row['reported'])} | {_cell(row['verified'])} | "
              f"{'-' if row['difference'] is None else format(row['difference'], '+.2f')} |"
              for row in detail["scenarios"]]
    lines += ["", f"Link to this entry: `{detail['url_query']}`"]
    return "\n".join(lines)
