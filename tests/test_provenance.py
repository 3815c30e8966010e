"""Results provenance and reproducible weights: metrics.json says which data, which weights and which
evaluator produced it; evaluating on another root never replaces the run's own results; export ships
only results of the exported weights; the same tensors always give the same weights bytes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from atzoo.data import parse_root
from atzoo.errors import AtzooError
from atzoo.formats.metrics import read_results
from atzoo.package import export_run
from atzoo.protocol import EVALUATOR_VERSION
from atzoo.runner import provenance
from atzoo.io import sha256_file
from atzoo.runner.provenance import detect_release, protocol_fingerprint, split_counts
from tests.packages import TINY_OVERRIDES


@pytest.fixture(scope="module")
def trained(tiny_synth_root, tmp_path_factory) -> Path:
    from atzoo.runner import train

    run = train("baseline", tiny_synth_root, tmp_path_factory.mktemp("prov") / "run", dict(TINY_OVERRIDES),
                progress=False)
    return Path(run.path)


@pytest.fixture(scope="module")
def other_root(tiny_synth_root, tmp_path_factory) -> Path:
    """The same synthetic dataset with one image one byte longer: another dataset."""
    root = tmp_path_factory.mktemp("other") / "at-ustc"
    shutil.copytree(tiny_synth_root, root)
    image = sorted(root.rglob("*-f2-*.jpg"))[0]
    image.write_bytes(image.read_bytes() + b"\0")
    return root


def test_metrics_json_records_data_weights_and_evaluator(trained, tiny_synth_root):
    results = read_results(trained / "metrics.json")
    records = parse_root(tiny_synth_root)
    dataset = results.provenance.dataset
    assert dataset.release == "synthetic" and dataset.image_count == len(records)
    assert dataset.fingerprint == protocol_fingerprint(records)
    assert results.provenance.weights_sha256 == sha256_file(trained / "model.safetensors")
    assert results.provenance.evaluator_version == EVALUATOR_VERSION
    assert results.provenance.date.tzinfo is not None
    text = (trained / "metrics.json").read_text()
    assert str(tiny_synth_root) not in text and ".jpg" not in text


def test_evaluating_on_another_root_writes_beside_and_keeps_the_runs_results(trained, other_root):
    from atzoo.cli.main import cli

    before = (trained / "metrics.json").read_bytes()
    result = CliRunner().invoke(cli, ["evaluate", str(trained), "--data", str(other_root), "--json"])
    assert result.exit_code == 0, result.output
    fingerprint = protocol_fingerprint(parse_root(other_root))
    beside = trained / f"metrics-{fingerprint[:12]}.json"
    assert f"Results written to {beside}" in result.output
    assert (trained / "metrics.json").read_bytes() == before
    assert read_results(beside).provenance.dataset.fingerprint == fingerprint

    out = trained.parent / "elsewhere.json"
    CliRunner().invoke(cli, ["evaluate", str(trained), "--data", str(other_root), "--out", str(out)])
    assert read_results(out).provenance.dataset.fingerprint == fingerprint
    again = CliRunner().invoke(cli, ["evaluate", str(trained), "--out", str(out)])
    assert again.exit_code == 2 and "already exists" in again.output
    own = CliRunner().invoke(cli, ["evaluate", str(trained), "--out", str(trained / "metrics.json")])
    assert own.exit_code == 2 and (trained / "metrics.json").read_bytes() == before


def test_export_ships_the_runs_own_results(trained, other_root, tmp_path, tiny_synth_root):
    package = export_run(trained, tmp_path / "pkg")
    shipped = json.loads((package / "results.json").read_text())
    assert shipped == json.loads((trained / "metrics.json").read_text())
    assert shipped["provenance"]["dataset"]["fingerprint"] == protocol_fingerprint(parse_root(tiny_synth_root))
    config = json.loads((package / "config.json").read_text())
    assert config["dataset_fingerprint"] == shipped["provenance"]["dataset"]["fingerprint"]
    card = (package / "README.md").read_text()
    assert shipped["provenance"]["weights_sha256"] in card and "release synthetic" in card


def test_the_release_is_read_off_the_data(tiny_synth_root, tmp_path, monkeypatch):
    assert detect_release(parse_root(tiny_synth_root)) == "synthetic"
    copy = tmp_path / "at-ustc"
    shutil.copytree(tiny_synth_root, copy)
    (copy / "synthetic.json").unlink()
    records = parse_root(copy)
    assert detect_release(records) == "custom"
    monkeypatch.setitem(provenance.OFFICIAL_COUNTS, "403k", split_counts(records))
    assert detect_release(records) == "403k"
    assert protocol_fingerprint(records) == protocol_fingerprint(parse_root(tiny_synth_root))


def test_the_fingerprint_covers_paths_sizes_and_labels_never_pixels(tiny_synth_root, tmp_path):
    base = protocol_fingerprint(parse_root(tiny_synth_root))
    copy = tmp_path / "copy"
    shutil.copytree(tiny_synth_root, copy)
    image = sorted(copy.rglob("*.jpg"))[0]
    flipped = bytearray(image.read_bytes())
    flipped[-3] ^= 0xFF
    image.write_bytes(bytes(flipped))
    assert protocol_fingerprint(parse_root(copy)) == base, "same paths, sizes and labels: pixels are not read"
    image.rename(image.with_name(image.stem[:-4] + "9999.jpg"))
    assert protocol_fingerprint(parse_root(copy)) != base


# ---------------------------------------------------------------------------------------------
# reproducible weights bytes


def test_export_twice_and_resume_three_times_give_one_sha256(trained, tmp_path, tiny_synth_root):
    from atzoo.runner import train

    first = sha256_file(export_run(trained, tmp_path / "a") / "model.safetensors")
    second = sha256_file(export_run(trained, tmp_path / "b") / "model.safetensors")
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    resumed = []
    for _ in range(3):
        train("baseline", None, copy, {}, resume=True, progress=False)
        resumed.append(sha256_file(copy / "model.safetensors"))
    assert {first, second, *resumed} == {sha256_file(trained / "model.safetensors")}
    assert read_results(copy / "metrics.json").provenance.weights_sha256 == first


def test_the_same_tensors_give_the_same_bytes_in_fresh_processes(tmp_path):
    code = """
import sys, torch
from safetensors.torch import save_model
from atzoo.weights_bytes import sort_metadata
torch.manual_seed(0)
save_model(torch.nn.Linear(4, 3), sys.argv[1],
           metadata={"format": "atzoo-model-1", "method": "builtins:baseline", "epoch": "3", "z": "1"})
sort_metadata(sys.argv[1])
"""
    hashes = set()
    for index in range(4):
        path = tmp_path / f"w{index}.safetensors"
        subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=300)
        hashes.add(sha256_file(path))
    assert len(hashes) == 1
    from safetensors import safe_open

    with safe_open(str(tmp_path / "w0.safetensors"), framework="pt") as handle:
        assert handle.metadata() == {"format": "atzoo-model-1", "method": "builtins:baseline", "epoch": "3", "z": "1"}


def test_results_out_of_range_are_refused_naming_the_field(trained, tmp_path):
    data = json.loads((trained / "metrics.json").read_text())
    data["NT-ST"]["mAP"] = 93.0
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(data))
    with pytest.raises(AtzooError, match=r"NT-ST.mAP = 93.0 \(a number\); expected a number from 0.0 to 1.0"):
        read_results(path)
