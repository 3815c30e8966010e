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
from atzoo.formats.entry import Entry, entry_json_schema, entry_problems, parse_entry_text
from atzoo.leaderboard.store import check_entry_data, load_snapshot, read_entry

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


def test_the_committed_json_schemas_are_current():
    from atzoo.leaderboard.schemas import registry_schemas

    schemas = registry_schemas()
    assert sorted(path.name for path in (REGISTRY / "schema").glob("*.json")) == sorted(schemas)
    for name, schema in schemas.items():
        assert json.loads((REGISTRY / "schema" / name).read_text()) == schema, name


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
    ("dataset.fingerprint", "abc", "dataset.fingerprint"),
    ("reported.DT-ST.rank1", True, "reported.DT-ST.rank1: Input should be a valid number, got a boolean true"),
    ("reported.DT-ST.rank5", "50", "reported.DT-ST.rank5: Input should be a valid number, got a string \"50\""),
    ("reported.DT-ST.mAP", float("nan"), "reported.DT-ST.mAP: Input should be a finite number, got a number NaN"),
    ("reported.AD-LT.mINP", float("inf"), "finite number"),
    ("weights.num_params", 3.0, "weights.num_params: Input should be a valid integer, got a number 3.0"),
    ("model.input_size", ["256", 128], "model.input_size.0"),
    ("disclosures.re_ranking", "yes", "disclosures.re_ranking"),
])
def test_the_schema_refuses_bad_entries(path, value, reason):
    assert entry_problems(submission_data()) == []
    problems = entry_problems(_with(submission_data(), path, value))
    assert any(reason in problem for problem in problems), problems


def test_an_integer_is_a_valid_percentage_and_nan_in_json_text_is_refused():
    data = _with(submission_data(), "reported.DT-ST.rank1", 40)
    assert entry_problems(data) == []
    assert Entry.model_validate(data).reported.scenario("DT-ST").rank1 == 40.0
    text = json.dumps(_with(submission_data(), "reported.DT-ST.mAP", float("nan")))
    assert '"mAP": NaN' in text
    with pytest.raises(LeaderboardError, match="NaN is not a JSON number"):
        parse_entry_text(text)


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


def test_supersede_cycles_are_refused(registry):
    moderation.supersede(registry, "paper-bot", "paper-cal")
    moderation.supersede(registry, "paper-cal", "paper-aim")
    before = (registry / "entries" / "paper-aim.json").read_text()
    with pytest.raises(LeaderboardError, match=r"cycle \(paper-aim -> paper-bot -> paper-cal -> paper-aim\)"):
        moderation.supersede(registry, "paper-aim", "paper-bot")
    with pytest.raises(LeaderboardError, match="cycle"):
        moderation.supersede(registry, "paper-cal", "paper-bot")
    assert (registry / "entries" / "paper-aim.json").read_text() == before
    assert moderation.supersede(registry, "paper-aim", "paper-uni-at").moderation.superseded_by == "paper-uni-at"


def test_ids_that_are_paths_are_refused(registry, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(registry / "entries" / "paper-bot.json", outside / "paper-bot.json")
    before = (outside / "paper-bot.json").read_text()
    for bad in ("../../outside/paper-bot", "../outside", "Paper-Bot", "x"):
        with pytest.raises(LeaderboardError, match="is not an entry id"):
            moderation.flag(registry, bad, "disputed")
    with pytest.raises(LeaderboardError, match="is not an entry id"):
        moderation.supersede(registry, "paper-bot", "../../outside/paper-bot")
    (registry / "entries" / "paper-link.json").symlink_to(outside / "paper-bot.json")
    with pytest.raises(LeaderboardError, match="resolves outside the registry's entries folder"):
        moderation.withdraw(registry, "paper-link")
    assert (outside / "paper-bot.json").read_text() == before


def test_the_moderate_and_verify_commands_refuse_a_path_as_id(registry, tmp_path):
    from atzoo.cli.main import cli

    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(registry / "entries" / "paper-bot.json", outside / "paper-bot.json")
    before = (outside / "paper-bot.json").read_text()
    runner = CliRunner()
    moderate = runner.invoke(cli, ["leaderboard", "moderate", "--dir", str(registry), "../../outside/paper-bot",
                                   "--flag", "x"])
    assert moderate.exit_code == 2 and "'../../outside/paper-bot' is not an entry id" in moderate.output
    supersede = runner.invoke(cli, ["leaderboard", "moderate", "--dir", str(registry), "paper-bot",
                                    "--superseded-by", "../outside/paper-bot"])
    assert supersede.exit_code == 2 and "is not an entry id" in supersede.output
    verify = runner.invoke(cli, ["leaderboard", "verify", "--dir", str(registry), "../../outside/paper-bot",
                                 "--data", str(tmp_path)])
    assert verify.exit_code == 2 and "is not an entry id" in verify.output
    assert (outside / "paper-bot.json").read_text() == before
    assert not read_entry(registry / "entries" / "paper-bot.json").moderation.flagged


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
    nested = tmp_path / "nested.json"
    nested.write_text('{"a":' * 5000 + "1" + "}" * 5000)
    broken = tmp_path / "broken.json"
    broken.write_text('{"id": ')
    result = CliRunner().invoke(cli, ["leaderboard", "check", str(nested), str(broken), "--dir", str(registry)])
    assert result.exit_code == 2 and not isinstance(result.exception, RecursionError)
    assert "nested.json is nested too deeply to be read as JSON" in result.output
    assert "broken.json is not valid JSON" in result.output


def test_check_reports_dangling_and_cyclic_supersede_links(registry, tmp_path):
    from atzoo.cli.main import cli

    dangling = read_entry(registry / "entries" / "paper-bot.json").to_json()
    dangling["moderation"]["superseded_by"] = "paper-nope"
    (registry / "entries" / "paper-bot.json").write_text(json.dumps(dangling))
    for name, successor in (("paper-cal", "paper-aim"), ("paper-aim", "paper-cal")):
        data = read_entry(registry / "entries" / f"{name}.json").to_json()
        data["moderation"]["superseded_by"] = successor
        (registry / "entries" / f"{name}.json").write_text(json.dumps(data))
    files = [str(registry / "entries" / f"{name}.json") for name in ("paper-bot", "paper-cal", "paper-uni-at")]
    result = CliRunner().invoke(cli, ["leaderboard", "check", *files, "--dir", str(registry)])
    assert result.exit_code == 2
    assert "moderation.superseded_by: 'paper-nope' names no entry of the registry" in result.output
    assert "cycle (paper-cal -> paper-aim -> paper-cal)" in result.output
    assert "paper-uni-at.json: ok" in result.output
    assert any("names no entry" in p for p in check_entry_data(dangling, load_snapshot(registry)))


def test_registry_messages_name_the_entry_not_the_server_path(registry):
    snapshot = load_snapshot(registry)
    with pytest.raises(LeaderboardError) as error:
        snapshot.get("nosuch")
    assert "no entry 'nosuch'" in str(error.value) and str(registry) not in str(error.value)
    duplicate = read_entry(registry / "entries" / "paper-bot.json").to_json()
    (problem,) = check_entry_data(duplicate, snapshot)
    assert "'paper-bot' is already taken" in problem and str(registry) not in problem


def test_schema_out_must_be_a_file_in_an_existing_folder(tmp_path):
    from atzoo.cli.main import cli

    folder = CliRunner().invoke(cli, ["leaderboard", "schema", "--out", str(tmp_path)])
    assert folder.exit_code == 2 and "is a directory" in folder.output
    missing = tmp_path / "nonexist" / "x.json"
    result = CliRunner().invoke(cli, ["leaderboard", "schema", "--out", str(missing)])
    assert result.exit_code == 2 and "is not an existing folder" in result.output
    assert not missing.parent.exists()
    stdout = CliRunner().invoke(cli, ["leaderboard", "schema", "--out", "-"])
    assert stdout.exit_code == 0 and json.loads(stdout.output) == entry_json_schema()


def test_serve_refuses_a_bad_port_and_a_runner_dir_that_is_a_file(registry, tmp_path, monkeypatch):
    import gradio as gr

    from atzoo.cli.main import cli

    launched = []
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kwargs: launched.append(kwargs))
    port = CliRunner().invoke(cli, ["leaderboard", "serve", "--port", "99999", "--dir", str(registry)])
    assert port.exit_code == 2 and "99999 is not in the range 1<=x<=65535" in port.output
    afile = tmp_path / "afile"
    afile.write_text("not a runner directory")
    result = CliRunner().invoke(cli, ["leaderboard", "serve", "--runner-dir", str(afile), "--dir", str(registry)])
    assert result.exit_code == 2 and "is a file, not a runner directory" in result.output
    assert launched == []
    fresh = CliRunner().invoke(cli, ["leaderboard", "serve", "--runner-dir", str(tmp_path / "not-yet"),
                                     "--dir", str(registry)])
    assert fresh.exit_code == 0, fresh.output
    assert len(launched) == 1


def test_list_shows_the_rows_best_first(registry):
    from atzoo.cli.main import cli

    moderation.flag(registry, "paper-bot", "disputed")
    result = CliRunner().invoke(cli, ["leaderboard", "list", "--json", "--dir", str(registry)])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 11 and rows[0]["Method"] == "Uni-AT" and "paper-bot" not in [r["ID"] for r in rows]
    assert [r["Any-Time"] for r in rows] == sorted((r["Any-Time"] for r in rows), reverse=True)
    assert {r["Status"] for r in rows} == {"reported by paper"}
    everything = json.loads(CliRunner().invoke(cli, ["leaderboard", "list", "--json", "--all", "--dir",
                                                     str(registry)]).output)
    assert next(r for r in everything if r["ID"] == "paper-bot")["Flags"] == "flagged: disputed"
    table = CliRunner().invoke(cli, ["leaderboard", "list", "--release", "403k", "--dir", str(registry)])
    assert table.exit_code == 0 and "paper-uni-at" in table.output and "55.80" in table.output
    empty = CliRunner().invoke(cli, ["leaderboard", "list", "--release", "135k", "--json", "--dir", str(registry)])
    assert json.loads(empty.output) == []
