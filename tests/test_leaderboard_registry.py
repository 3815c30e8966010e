"""The registry: the seeded paper rows, the schema (and its committed JSON Schema), the cached
snapshot, moderation, and the `atzoo leaderboard check|list|moderate|schema` commands."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from atzoo.errors import LeaderboardError
from atzoo.leaderboard import moderation
from atzoo.leaderboard.schema import entry_json_schema, entry_problems
from atzoo.leaderboard.store import load_snapshot, read_entry

REPO_ROOT = Path(__file__).resolve().parents[1]
REGISTRY = REPO_ROOT / "leaderboard"
# The Any-Time column as the paper prints it (Rank-1, mAP).
PRINTED_ANY_TIME = {
    "BoT": (44.94, 22.56), "TransReID": (48.30, 31.42), "CLIP-ReID (R50)": (48.29, 29.37),
    "CLIP-ReID (ViT-B)": (52.56, 35.86), "CAL": (50.53, 33.95), "AIM": (50.19, 33.31), "CCIL": (51.58, 31.74),
    "CAJ": (50.09, 30.04), "CIFT": (53.29, 33.47), "DEEN": (53.52, 33.48),
    "Baseline (6 tokens, ID loss)": (50.90, 34.75), "Uni-AT": (55.80, 41.38),
}


@pytest.fixture()
def registry(tmp_path) -> Path:
    """A copy of the seeded registry, safe to modify."""
    root = tmp_path / "leaderboard"
    shutil.copytree(REGISTRY / "entries", root / "entries")
    return root


def submission_data() -> dict:
    data = read_entry(REGISTRY / "entries" / "paper-bot.json").to_json()
    data.update(id="bot-submitted", origin="submission", dataset={**data["dataset"], "evaluator_version": "atzoo-1.0"},
                weights={"repo": "org/bot", "revision": "b" * 40, "filename": "model.safetensors",
                         "sha256": "c" * 64, "num_params": 1000})
    return data


# ---------------------------------------------------------------------------------------------
# the seeded rows


def test_the_twelve_paper_rows_are_seeded_as_reported():
    snapshot = load_snapshot(REGISTRY)
    papers = [e for e in snapshot.entries if e.id.startswith("paper-")]
    assert not snapshot.problems
    assert sorted(e.method.name for e in papers) == sorted(PRINTED_ANY_TIME)
    for entry in papers:
        assert entry.origin == "paper" and entry.weights is None and entry.verified is None
        assert entry.dataset.release == "403k" and entry.dataset.evaluator_version == "official"
        assert "paper" in entry.submitter.lower() or "paper" in entry.disclosures.notes.lower()


@pytest.mark.parametrize("method", sorted(PRINTED_ANY_TIME))
def test_the_computed_any_time_matches_the_printed_one(method):
    entry = next(e for e in load_snapshot(REGISTRY).entries if e.method.name == method)
    rank1, mAP = PRINTED_ANY_TIME[method]
    computed = entry.any_time
    if method == "DEEN":
        assert abs(computed["rank1"] - rank1) > 0.02 and abs(computed["mAP"] - mAP) > 0.02
        assert "53.52/33.48" in entry.disclosures.notes and "53.47/33.53" in entry.disclosures.notes
        assert (round(computed["rank1"], 2), round(computed["mAP"], 2)) == (53.47, 33.53)
    else:
        assert computed["rank1"] == pytest.approx(rank1, abs=0.011)
        assert computed["mAP"] == pytest.approx(mAP, abs=0.011)


def test_the_committed_json_schema_is_current():
    committed = json.loads((REGISTRY / "schema" / "entry-v1.schema.json").read_text())
    assert committed == entry_json_schema()


def test_the_schema_command_writes_the_same_schema(tmp_path):
    from atzoo.cli.main import cli

    result = CliRunner().invoke(cli, ["leaderboard", "schema", "--out", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "s.json").read_text() == (REGISTRY / "schema" / "entry-v1.schema.json").read_text()


# ---------------------------------------------------------------------------------------------
# schema refusals


def _with(data: dict, path: str, value) -> dict:
    *parents, last = path.split(".")
    target = data
    for key in parents:
        target = target[key]
    target[last] = value
    return data


@pytest.mark.parametrize("path, value, reason", [
    ("reported.Any-Time", {"rank1": 50.0, "mAP": 30.0}, "Any-Time is computed by the project"),
    ("weights.revision", "main", "weights.revision"),
    ("reported.DT-ST.mAP", 100.5, "less than or equal to 100"),
    ("reported.DT-ST.rank5", 10.0, "rank5 (10.0) is below rank1"),
    ("moderation.flagged", True, "a flagged entry needs a flag_reason"),
    ("weights", None, "a submission must name its weights"),
    ("weights.sha256", "abc", "weights.sha256"),
    ("dataset.release", "400k", "dataset.release"),
])
def test_the_schema_refuses_bad_entries(path, value, reason):
    assert entry_problems(submission_data()) == []
    problems = entry_problems(_with(submission_data(), path, value))
    assert any(reason in problem for problem in problems), problems


# ---------------------------------------------------------------------------------------------
# the snapshot


def test_the_snapshot_is_reread_only_after_a_change(registry):
    first = load_snapshot(registry)
    assert load_snapshot(registry) is first
    path = registry / "entries" / "paper-bot.json"
    data = json.loads(path.read_text())
    data["disclosures"]["notes"] += " Edited."
    path.write_text(json.dumps(data, indent=2))
    second = load_snapshot(registry)
    assert second is not first and second.get("paper-bot").disclosures.notes.endswith("Edited.")
    assert load_snapshot(registry) is second


def test_a_bad_file_is_reported_without_hiding_the_others(registry):
    (registry / "entries" / "broken.json").write_text("{not json")
    data = submission_data()
    data["reported"]["Any-Time"] = {"rank1": 1.0, "mAP": 1.0}
    (registry / "entries" / "bot-submitted.json").write_text(json.dumps(data))
    snapshot = load_snapshot(registry)
    assert len(snapshot.entries) == 12
    assert set(snapshot.problems) == {"broken.json", "bot-submitted.json"}
    assert "Any-Time" in " ".join(snapshot.problems["bot-submitted.json"])


# ---------------------------------------------------------------------------------------------
# moderation


def test_flag_unflag_withdraw_supersede(registry):
    flagged = moderation.flag(registry, "paper-bot", "numbers differ from the published code")
    assert flagged.moderation.flagged and "published code" in flagged.moderation.flag_reason
    assert read_entry(registry / "entries" / "paper-bot.json").moderation.flagged
    assert not moderation.unflag(registry, "paper-bot").moderation.flagged
    assert moderation.withdraw(registry, "paper-cal").moderation.withdrawn
    assert moderation.supersede(registry, "paper-baseline", "paper-uni-at").moderation.superseded_by == "paper-uni-at"
    with pytest.raises(LeaderboardError, match="needs a reason"):
        moderation.flag(registry, "paper-bot", "  ")
    with pytest.raises(LeaderboardError, match="no entry 'paper-nope'"):
        moderation.withdraw(registry, "paper-nope")
    with pytest.raises(LeaderboardError, match="no entry 'missing'"):
        moderation.supersede(registry, "paper-bot", "missing")
    with pytest.raises(LeaderboardError, match="cannot supersede itself"):
        moderation.supersede(registry, "paper-bot", "paper-bot")


def test_the_moderate_command(registry):
    from atzoo.cli.main import cli

    runner = CliRunner()
    result = runner.invoke(cli, ["leaderboard", "moderate", "paper-aim", "--flag", "disputed", "--dir", str(registry)])
    assert result.exit_code == 0, result.output
    assert read_entry(registry / "entries" / "paper-aim.json").moderation.flag_reason == "disputed"
    both = runner.invoke(cli, ["leaderboard", "moderate", "paper-aim", "--unflag", "--withdraw",
                               "--dir", str(registry)])
    assert both.exit_code == 2 and "exactly one" in both.output


# ---------------------------------------------------------------------------------------------
# check and list


def test_check_lists_every_problem_and_exits_2(registry, tmp_path):
    from atzoo.cli.main import cli

    good = CliRunner().invoke(cli, ["leaderboard", "check", *map(str, (registry / "entries").glob("*.json")),
                                    "--dir", str(registry)])
    assert good.exit_code == 0, good.output
    assert good.output.count(": ok") == 12
    data = submission_data()
    data["reported"]["DT-ST"]["mAP"] = 120.0
    data["weights"]["revision"] = "main"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    duplicate = tmp_path / "dup.json"
    duplicate.write_text(json.dumps(read_entry(registry / "entries" / "paper-bot.json").to_json()))
    result = CliRunner().invoke(cli, ["leaderboard", "check", str(bad), str(duplicate), "--dir", str(registry)])
    assert result.exit_code == 2
    assert "bad.json: 2 problem(s)" in result.output
    assert "reported.DT-ST.mAP" in result.output and "weights.revision" in result.output
    assert "'paper-bot' is already taken" in result.output


def test_list_shows_the_rows_best_first(registry):
    from atzoo.cli.main import cli

    moderation.flag(registry, "paper-bot", "disputed")
    result = CliRunner().invoke(cli, ["leaderboard", "list", "--json", "--dir", str(registry)])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 12 and rows[0]["method"] == "Uni-AT"
    assert [r["any_time_rank1"] for r in rows] == sorted((r["any_time_rank1"] for r in rows), reverse=True)
    assert {r["status"] for r in rows} == {"reported (paper)"}
    assert next(r for r in rows if r["id"] == "paper-bot")["marks"] == "flagged"
    table = CliRunner().invoke(cli, ["leaderboard", "list", "--release", "403k", "--dir", str(registry)])
    assert table.exit_code == 0 and "paper-uni-at" in table.output and "55.80" in table.output
    empty = CliRunner().invoke(cli, ["leaderboard", "list", "--release", "135k", "--json", "--dir", str(registry)])
    assert json.loads(empty.output) == []
