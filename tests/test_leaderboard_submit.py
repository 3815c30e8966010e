"""Submission: a package or a run directory becomes an entry, and every kind of bad submission is
refused with its reason. Runs offline against a fake Hub cache on disk (see tests/packages.py)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from atzoo.errors import AtzooError, LeaderboardError
from atzoo.hub import sha256_file
from atzoo.io import read_json, write_json_atomic
from atzoo.leaderboard.store import load_snapshot, read_entry
from atzoo.leaderboard.submit import (build_entry, count_parameters, prepare_submission, read_safetensors_header,
                                      submit)
from atzoo.protocol import EVALUATOR_VERSION, SCENARIO_NAMES
from tests.packages import make_package, make_run_dir, populate_hf_cache

REPO = "org/tiny-baseline"
COMMIT = "a" * 40
OPTIONS = {"weights_ref": f"{REPO}@{COMMIT}", "submitter": "Test Submitter", "pretraining": "none"}
REPO_ROOT = Path(__file__).resolve().parents[1]


def good_results(base: float = 0.5, folder: Path | None = None) -> dict:
    """Aggregate results as the runner writes them (fractions), with Any-Time the mean of the six, and
    the provenance of the weights and data of the package or run in `folder`."""
    results: dict = {"format_version": 1, "protocol_version": "1.0"}
    for index, name in enumerate(SCENARIO_NAMES):
        results[name] = {"rank1": base + index / 100, "rank5": 0.8, "rank10": 0.9, "rank20": 0.95,
                         "mAP": base - 0.1, "mINP": 0.2, "queries": 12}
    results["Any-Time"] = {metric: sum(results[n][metric] for n in SCENARIO_NAMES) / 6
                           for metric in ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")}
    results["mixed"] = {"Any-Time": {"rank1": 0.4, "rank5": 0.5, "rank10": 0.6, "rank20": 0.7, "mAP": 0.3,
                                     "mINP": 0.1, "queries": 20}}
    if folder is not None:
        config = read_json(folder / "config.json")
        results["provenance"] = {
            "dataset": {"release": config.get("dataset_release", "synthetic"), "image_count": 1000,
                        "fingerprint": config.get("dataset_fingerprint") or "e" * 64},
            "weights_sha256": sha256_file(folder / "model.safetensors"), "evaluator_version": "atzoo-1.0",
            "protocol_version": "1.0", "date": "2026-12-01T00:00:00Z"}
    return results


@pytest.fixture()
def package(tmp_path, hf_cache):
    path = make_package(tmp_path)
    write_json_atomic(path / "results.json", good_results(0.5, path))
    return path


def edit_results(package: Path, change) -> None:
    results = read_json(package / "results.json")
    change(results)
    write_json_atomic(package / "results.json", results)


def refusal(package: Path, **options) -> str:
    with pytest.raises(LeaderboardError) as error:
        prepare_submission(package, **{**OPTIONS, **options})
    return str(error.value)


# ---------------------------------------------------------------------------------------------
# accepted submissions


def test_a_package_becomes_an_entry_file(package, registry):
    path = submit(package, registry, **OPTIONS, task_family="AT-ReID", tta=["flip"])
    entry = read_entry(path)
    sha = sha256_file(package / "model.safetensors")
    assert path.name == f"baseline-{sha[:8]}.json"
    assert entry.origin == "submission"
    assert entry.method.registered_name == "builtins:baseline"
    assert (entry.method.plugin_distribution, entry.method.task_family) == ("atzoo", "AT-ReID")
    assert (entry.weights.repo, entry.weights.revision, entry.weights.sha256) == (REPO, COMMIT, sha)
    assert entry.weights.num_params == sum(t.numel() for t in load_file(package / "model.safetensors").values())
    assert entry.model.backbone == "builtins:tiny_cnn" and entry.model.input_size == (32, 16)
    assert entry.dataset.release == "synthetic" and entry.dataset.evaluator_version == EVALUATOR_VERSION
    assert entry.reported.scenario("DT-LT").rank1 == 51.0 and entry.reported.scenario("AD-LT").rank20 == 95.0
    assert entry.disclosures.uses_tricks and entry.verified is None
    assert entry.any_time["rank1"] == pytest.approx(52.5)


def test_a_run_directory_is_exported_then_submitted(tmp_path, hf_cache, registry):
    run = make_run_dir(tmp_path / "run", synthetic=True)
    write_json_atomic(run / "metrics.json", good_results(0.6, run))
    entry = build_entry(run, **{k: v for k, v in OPTIONS.items() if k != "weights_ref"},
                        weights_ref=OPTIONS["weights_ref"], entry_id="my-run", name="My Run")
    assert (entry.id, entry.method.name) == ("my-run", "My Run")
    assert entry.weights.sha256 == sha256_file(run / "model.safetensors")
    assert entry.reported.scenario("DT-ST").rank1 == 60.0
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "metrics.json", "model.safetensors"]


def test_the_hub_copy_at_the_pinned_commit_is_compared(package, hf_cache):
    commit = populate_hf_cache(hf_cache, REPO, package, revision="main")
    submission = prepare_submission(package, **{**OPTIONS, "weights_ref": f"{REPO}@{commit}"})
    assert "are the local file" in submission.notes[0]
    unreachable = prepare_submission(package, **OPTIONS)
    assert "could not be fetched" in unreachable.notes[0]


# ---------------------------------------------------------------------------------------------
# refused submissions


@pytest.mark.parametrize("change, reason", [
    (lambda r: r.pop("NT-LT"), "scenario NT-LT is missing"),
    (lambda r: r["DT-ST"].update(mAP=1.5), "DT-ST mAP = 1.5 is not a fraction in [0, 1]"),
    (lambda r: r["AD-ST"].update(rank5=-0.1), "AD-ST rank5 = -0.1 is not a fraction"),
    (lambda r: r["DT-LT"].pop("mINP"), "DT-LT lacks mINP"),
    (lambda r: r["NT-ST"].update(rank10=0.7), "NT-ST rank10 (0.7) is below rank5 (0.8)"),
    (lambda r: r["Any-Time"].update(rank1=0.6), "Any-Time rank1 = 0.6 is not the mean of the six scenarios"),
    (lambda r: r["DT-ST"].update(rank1=0.7), "tampered"),
])
def test_bad_results_are_refused_with_the_reason(package, change, reason):
    edit_results(package, change)
    message = refusal(package)
    assert reason in message and "results.json" in message


def test_every_results_problem_is_listed_at_once(package):
    edit_results(package, lambda r: (r.pop("NT-LT"), r["DT-ST"].update(mAP=2.0)))
    message = refusal(package)
    assert "NT-LT is missing" in message and "DT-ST mAP = 2.0" in message


def test_a_damaged_safetensors_header_is_refused(package):
    weights = package / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[:8] = struct.pack("<Q", len(data) * 2)
    weights.write_bytes(bytes(data))
    assert "damaged or truncated safetensors file" in refusal(package)


def test_a_truncated_weights_file_is_refused(package):
    weights = package / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    message = refusal(package)
    assert "damaged safetensors header" in message and "data offsets" in message


def test_the_parameter_count_reads_the_header_only(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.zeros(3, 4), "b": torch.zeros(5)}, str(path), metadata={"note": "x"})
    header = read_safetensors_header(path)
    assert "__metadata__" in header and count_parameters(header) == 17


def test_a_wrong_sha256_is_refused(package):
    message = refusal(package, sha256="0" * 64)
    assert "the hash does not match the weights" in message and "--sha256" in message
    assert prepare_submission(package, **OPTIONS, sha256=sha256_file(package / "model.safetensors")).entry


def test_other_weights_at_the_pinned_commit_are_refused(tmp_path, package, hf_cache):
    other = make_package(tmp_path, "other", seed=1)
    commit = populate_hf_cache(hf_cache, REPO, other)
    message = refusal(package, weights_ref=f"{REPO}@{commit}")
    assert "the hash does not match the weights" in message and sha256_file(other / "model.safetensors") in message


@pytest.mark.parametrize("ref, reason", [
    (f"{REPO}@main", "is not a 40-hex commit id"),
    (f"{REPO}@v1.0", "is not a 40-hex commit id"),
    (REPO, "names no revision"),
    ("not a repo@" + COMMIT, "is not a Hub repo id"),
])
def test_a_revision_that_can_move_is_refused(package, ref, reason):
    message = refusal(package, weights_ref=ref)
    assert reason in message
    if "40-hex" in reason:
        assert "atzoo push" in message and "list_repo_commits" in message


def test_an_unregistered_method_is_refused(package):
    config = read_json(package / "config.json")
    config["method"] = config["recipe"]["method"]["qualified_name"] = "builtins:no_such_method"
    write_json_atomic(package / "config.json", config)
    assert "'builtins:no_such_method' is not registered" in refusal(package)


def test_weights_with_other_keys_are_refused(package):
    tensors = load_file(package / "model.safetensors")
    tensors["extra.weight"] = torch.zeros(2)
    save_file(tensors, str(package / "model.safetensors"))
    assert "missing or unexpected keys" in refusal(package)


def test_duplicates_are_refused(package, registry):
    first = submit(package, registry, **OPTIONS)
    with pytest.raises(LeaderboardError, match="is already taken"):
        submit(package, registry, **OPTIONS)
    with pytest.raises(LeaderboardError, match="same weights file .* is already entered"):
        submit(package, registry, **OPTIONS, entry_id="another-id")
    assert [e.id for e in load_snapshot(registry).entries] == [first.stem]


def test_a_package_of_another_release_is_refused(package):
    assert "made for dataset release 'synthetic', not '403k'" in refusal(package, dataset_release="403k")


def test_a_folder_that_is_neither_run_nor_package_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(LeaderboardError, match="neither a run directory"):
        prepare_submission(tmp_path / "empty", **OPTIONS)
    with pytest.raises(AtzooError, match="no such folder"):
        prepare_submission(tmp_path / "missing", **OPTIONS)
    (tmp_path / "somefile").write_text("not a folder")
    with pytest.raises(LeaderboardError, match="somefile is a file; expected a run directory or an exported"):
        prepare_submission(tmp_path / "somefile", **OPTIONS)


def test_a_malformed_sha256_is_refused(package):
    with pytest.raises(LeaderboardError, match="--sha256 'xyz' is not a sha256 \\(64 hex digits\\)"):
        prepare_submission(package, **OPTIONS, sha256="xyz")


def test_a_sha256_mismatch_names_the_users_weights_file(tmp_path, hf_cache):
    run = make_run_dir(tmp_path / "run", synthetic=True)
    write_json_atomic(run / "metrics.json", good_results(0.6, run))
    message = refusal(run, sha256="1" * 64)
    assert f"--sha256 is {'1' * 64}, {run / 'model.safetensors'} has" in message
    assert "atzoo-submit-" not in message


def test_the_entry_records_the_dataset_fingerprint(package):
    entry = build_entry(package, **OPTIONS)
    assert entry.dataset.fingerprint == read_json(package / "config.json")["dataset_fingerprint"] == "e" * 64
    config = read_json(package / "config.json")
    write_json_atomic(package / "config.json", {**config, "dataset_fingerprint": "d" * 64})
    assert "provenance.dataset.fingerprint differs from config.json" in refusal(package)


def test_results_without_any_time_are_refused_not_checked_less(package):
    edit_results(package, lambda r: r.pop("Any-Time"))
    assert "Any-Time is missing" in refusal(package)


def test_results_of_other_weights_or_without_provenance_are_refused(package):
    edit_results(package, lambda r: r["provenance"].update(weights_sha256="0" * 64))
    assert "these results are not of these weights" in refusal(package)
    edit_results(package, lambda r: r.pop("provenance"))
    assert "provenance is missing" in refusal(package)


def test_a_custom_release_is_packaged_but_not_submitted(tmp_path, hf_cache):
    from atzoo.package import export_run

    package = export_run(make_run_dir(tmp_path / "private", release="custom"), tmp_path / "pkg")
    message = refusal(package)
    assert "dataset release 'custom' is not one the board ranks (403k, 135k, synthetic)" in message


# ---------------------------------------------------------------------------------------------
# command line


def cli_args(package: Path, registry: Path, *extra: str) -> list[str]:
    return [str(package), "--weights-repo", OPTIONS["weights_ref"], "--submitter", "Test Submitter",
            "--pretraining", "none", "--dir", str(registry), *extra]


def test_the_submit_command_writes_the_entry_and_prints_the_next_step(package, registry):
    from atzoo.cli.leaderboard_commands import submit as submit_command

    result = CliRunner().invoke(submit_command, cli_args(package, registry, "--re-ranking", "--tta", "flip"))
    assert result.exit_code == 0, result.output
    (path,) = (registry / "entries").iterdir()
    entry = read_entry(path)
    assert f"Entry written to {path}" in result.output
    assert f"atzoo leaderboard verify {entry.id} --data SYNTHETIC_ROOT" in result.output
    assert entry.disclosures.re_ranking and entry.disclosures.test_time_augmentation == ["flip"]


def test_the_submit_command_refuses_with_exit_2_and_dry_run_writes_nothing(package, registry):
    from atzoo.cli.main import cli

    refused = CliRunner().invoke(cli, ["submit", *cli_args(package, registry, "--sha256", "1" * 64)])
    assert refused.exit_code == 2 and "the hash does not match the weights" in refused.output
    dry = CliRunner().invoke(cli, ["submit", *cli_args(package, registry, "--dry-run")])
    assert dry.exit_code == 0, dry.output
    assert '"origin": "submission"' in dry.output and not list((registry / "entries").iterdir())


def test_the_script_in_the_registry_folder_submits_to_that_folder(package, registry, hf_cache):
    shutil.copy(REPO_ROOT / "leaderboard" / "submit.py", registry / "submit.py")
    env = {**os.environ, "HF_HUB_CACHE": str(hf_cache), "HF_HUB_OFFLINE": "1"}
    env.pop("ATZOO_LEADERBOARD_DIR", None)
    args = [sys.executable, str(registry / "submit.py"), str(package), "--weights-repo", OPTIONS["weights_ref"],
            "--submitter", "Script User", "--pretraining", "none"]
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=package.parent, timeout=600)
    assert done.returncode == 0, done.stderr
    (path,) = (registry / "entries").iterdir()
    assert json.loads(path.read_text())["submitter"] == "Script User"


def test_push_uploads_only_after_every_check_and_pins_the_commit_it_created(package, registry, recording_api):
    from atzoo.cli.main import cli
    from tests.conftest import COMMIT

    args = [str(package), "--push", "org/tiny", "--submitter", "Tester", "--pretraining", "none",
            "--dir", str(registry)]
    dry = CliRunner().invoke(cli, ["submit", *args, "--dry-run"])
    assert dry.exit_code == 0 and "nothing pushed" in dry.output and recording_api.calls == []
    refused = CliRunner().invoke(cli, ["submit", *args, "--sha256", "1" * 64])
    assert refused.exit_code == 2 and recording_api.calls == []
    result = CliRunner().invoke(cli, ["submit", *args])
    assert result.exit_code == 0, result.output
    assert [call[0] for call in recording_api.calls] == ["create_repo", "create_commit"]
    (path,) = (registry / "entries").iterdir()
    weights = read_entry(path).weights
    assert (weights.repo, weights.revision) == ("org/tiny", COMMIT)
    both = CliRunner().invoke(cli, ["submit", *args, "--weights-repo", f"org/tiny@{COMMIT}"])
    assert both.exit_code == 2 and "exactly one of --weights-repo" in both.output
