"""Verification: the exact weights from a (fake, offline) Hub cache re-evaluated on the tiny
synthetic dataset, compared with the reported numbers, and the verified block written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from atzoo.errors import LeaderboardError
from atzoo.io import read_json
from atzoo.leaderboard.store import entry_path, read_entry, update_entry
from atzoo.leaderboard.submit import submit
from atzoo.leaderboard.verify import DEFAULT_TOLERANCE, verify_entry
from atzoo.protocol import SCENARIO_NAMES
from tests.packages import make_measured_package, populate_hf_cache

REPO = "org/tiny-baseline"


@pytest.fixture()
def submitted(tmp_path, hf_cache, registry, tiny_synth_root) -> tuple[Path, Path]:
    """(entry file, package): a package measured on the tiny root, pushed to the fake Hub cache,
    then submitted."""
    package = make_measured_package(tmp_path, tiny_synth_root)
    commit = populate_hf_cache(hf_cache, REPO, package)
    path = submit(package, registry, weights_ref=f"{REPO}@{commit}", submitter="Tester", pretraining="none")
    return path, package


def edit_reported(path: Path, scenario: str, metric: str, delta: float) -> float:
    """Move a reported metric by |delta| (up, unless that passes 100) and return the new value."""
    data = read_entry(path).to_json()
    old = data["reported"][scenario][metric]
    value = round(old + delta if old + delta <= 100.0 else old - delta, 2)
    data["reported"][scenario][metric] = value
    update_entry(path, reported=data["reported"])
    return value


def test_reported_numbers_the_runner_reproduces_are_verified(submitted, tiny_synth_root, signer):
    path, _ = submitted
    entry = verify_entry(path, tiny_synth_root, device="cpu", progress=False, signer=signer)
    verified = read_entry(path).verified
    assert entry.verified == verified
    assert verified.status == "verified" and verified.max_difference == 0.0
    assert verified.tolerance == DEFAULT_TOLERANCE
    assert verified.metrics == entry.reported
    assert verified.environment["device"] == "cpu" and verified.environment["plugin"].startswith("atzoo ")
    assert {"atzoo", "torch", "python"} <= set(verified.environment)
    assert "the entry was made with" not in verified.message


def test_a_different_plugin_version_is_named_in_the_message(submitted, tiny_synth_root, signer):
    path, _ = submitted
    method = read_entry(path).to_json()["method"]
    assert method["plugin_distribution"] == "atzoo"
    update_entry(path, method={**method, "plugin_version": "0.0.1"})
    verified = verify_entry(path, tiny_synth_root, device="cpu", progress=False, signer=signer).verified
    assert verified.status == "verified"
    assert verified.message.endswith(f"(evaluated with atzoo {verified.environment['atzoo']}; "
                                     f"the entry was made with 0.0.1)")


def test_edited_numbers_are_a_mismatch_with_the_largest_difference(submitted, tiny_synth_root, signer):
    path, _ = submitted
    edit_reported(path, "NT-LT", "mAP", 3.0)
    edit_reported(path, "DT-ST", "mINP", 0.3)
    verified = verify_entry(path, tiny_synth_root, device="cpu", progress=False, signer=signer).verified
    assert verified.status == "mismatch"
    assert verified.max_difference == pytest.approx(3.0, abs=1e-6)
    assert "1 metric(s) beyond 0.5 points" in verified.message and "NT-LT mAP" in verified.message
    strict = verify_entry(path, tiny_synth_root, tolerance=0.1, device="cpu", progress=False,
                          signer=signer).verified
    assert "2 metric(s) beyond 0.1 points" in strict.message and strict.tolerance == 0.1
    loose = verify_entry(path, tiny_synth_root, tolerance=5.0, device="cpu", progress=False,
                         signer=signer).verified
    assert loose.status == "verified"


def test_tampered_weights_in_the_cache_are_refused_and_nothing_is_written(submitted, tiny_synth_root, hf_cache,
                                                                          signer):
    path, _ = submitted
    (cached,) = hf_cache.glob("models--*/snapshots/*/model.safetensors")
    data = bytearray(cached.read_bytes())
    data[-1] ^= 0xFF
    cached.write_bytes(bytes(data))
    before = path.read_text()
    with pytest.raises(LeaderboardError, match="sha256 mismatch") as error:
        verify_entry(path, tiny_synth_root, device="cpu", progress=False, signer=signer)
    assert "(from the entry's weights.sha256)" in str(error.value) and "--sha256" not in str(error.value)
    assert path.read_text() == before


def test_another_synthetic_dataset_is_refused_and_a_verified_block_kept(submitted, tiny_synth_root, tmp_path, signer):
    path, _ = submitted
    _, package = submitted
    assert read_entry(path).dataset.fingerprint == read_json(package / "config.json")["dataset_fingerprint"]
    verify_entry(path, tiny_synth_root, device="cpu", progress=False, signer=signer)
    other = tmp_path / "other-synth"
    shutil.copytree(tiny_synth_root, other)
    image = next(other.rglob("*.jpg"))
    image.write_bytes(image.read_bytes() + b"\0")
    before = path.read_text()
    with pytest.raises(LeaderboardError, match="is not the synthetic dataset entry .* was measured on"):
        verify_entry(path, other, device="cpu", progress=False, signer=signer)
    assert path.read_text() == before and read_entry(path).verified.status == "verified"


def test_a_worse_status_says_what_it_replaced(submitted, tiny_synth_root, signer):
    path, _ = submitted
    first = verify_entry(path, tiny_synth_root, device="cpu", progress=False, signer=signer).verified
    assert "replaces" not in first.message
    edit_reported(path, "NT-LT", "mAP", 3.0)
    worse = verify_entry(path, tiny_synth_root, device="cpu", progress=False, signer=signer).verified
    assert worse.status == "mismatch"
    assert worse.message.endswith(f"(replaces a 'verified' result of {first.date.date().isoformat()})")
    again = verify_entry(path, tiny_synth_root, device="cpu", progress=False, signer=signer).verified
    assert "replaces" not in again.message


def test_a_paper_entry_is_refused(signer, registry):
    paper = Path(__file__).resolve().parents[1] / "leaderboard" / "entries" / "paper-bot.json"
    with pytest.raises(LeaderboardError, match="paper row without weights"):
        verify_entry(paper, "unused", progress=False, signer=signer, registry_dir=registry)


def test_missing_files_and_the_wrong_release_are_refused(submitted, tiny_synth_root, tmp_path, monkeypatch, signer,
                                                          registry):
    path, _ = submitted
    with pytest.raises(LeaderboardError, match="no such entry file"):
        verify_entry(tmp_path / "nope.json", tiny_synth_root, progress=False, signer=signer, registry_dir=registry)
    with pytest.raises(LeaderboardError, match="no such dataset folder"):
        verify_entry(path, tmp_path / "no-data", progress=False, signer=signer)
    (tmp_path / "atustc").mkdir()
    with pytest.raises(LeaderboardError, match="not a synthetic dataset"):
        verify_entry(path, tmp_path / "atustc", progress=False, signer=signer)
    with pytest.raises(LeaderboardError, match="non-negative"):
        verify_entry(path, tiny_synth_root, tolerance=-1.0, progress=False, signer=signer)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(LeaderboardError, match="CUDA is not available"):
        verify_entry(path, tiny_synth_root, device="cuda", progress=False, signer=signer)
    assert read_entry(path).verified is None


def test_a_model_that_cannot_be_evaluated_is_failed_without_local_paths(submitted, tiny_synth_root, monkeypatch,
                                                                        signer):
    import atzoo.runner.evaluation as evaluation

    path, _ = submitted

    def broken(*args, **kwargs):
        raise RuntimeError(f"shape mismatch while reading {tiny_synth_root}/x.jpg")

    monkeypatch.setattr(evaluation, "evaluate_model", broken)
    verified = verify_entry(path, tiny_synth_root, device="cpu", progress=False, signer=signer).verified
    assert verified.status == "failed" and verified.metrics is None
    assert "shape mismatch" in verified.message and str(tiny_synth_root) not in verified.message


def test_only_aggregates_are_written(submitted, tiny_synth_root, tmp_path, hf_cache, signer):
    path, package = submitted
    verify_entry(path, tiny_synth_root, device="cpu", progress=False, signer=signer)
    block = read_json(path)["verified"]
    text = json.dumps(block)
    for local in (str(tiny_synth_root), str(tmp_path), str(hf_cache), str(Path.home()), ".jpg", ".png"):
        assert local not in text
    assert set(block) == {"status", "date", "tolerance", "metrics", "max_difference", "environment", "message",
                          "verifier", "signature"}
    assert set(block["metrics"]) == set(SCENARIO_NAMES)
    for values in block["metrics"].values():
        assert set(values) == {"rank1", "rank5", "rank10", "rank20", "mAP", "mINP"}
        assert all(isinstance(v, float) and 0.0 <= v <= 100.0 for v in values.values())
    assert all(isinstance(v, str) for v in block["environment"].values())


def test_the_verify_command_by_id(submitted, tiny_synth_root, registry, signer):
    from atzoo.cli.main import cli
    from atzoo.leaderboard.signing import default_key_path

    path, _ = submitted
    result = CliRunner().invoke(cli, ["leaderboard", "verify", path.stem, "--data", str(tiny_synth_root),
                                      "--device", "cpu", "--no-progress", "--dir", str(registry)],
                                env={"ATZOO_VERIFIER": "test-runner"})
    assert result.exit_code == 0, result.output
    assert f"{path.stem}: verified (max difference 0.00 points, tolerance 0.5)" in result.output
    assert "Signed by test-runner" in result.output and "Warning" not in result.output
    assert "atzoo leaderboard verify finished in " in result.stderr
    verified = read_entry(entry_path(registry, path.stem)).verified
    assert verified.status == "verified" and verified.verifier == "test-runner" and len(verified.signature) == 88
    default_key_path("test-runner").chmod(0o644)
    paper = CliRunner().invoke(cli, ["leaderboard", "verify", "paper-bot", "--data", str(tiny_synth_root),
                                     "--dir", str(Path(__file__).resolve().parents[1] / "leaderboard"),
                                     "--verifier", "test-runner"])
    assert paper.exit_code == 2 and "can be read by other users (mode 0644)" in paper.output
    assert "'test-runner' is not listed in" in paper.output
