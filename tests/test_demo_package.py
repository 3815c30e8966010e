"""The model package shipped with atzoo: made by its documented command, bit for bit, and part of
the wheel. Retraining it takes minutes on two cores, so the bit-exactness of the command is shown
on a smaller run of the same command (two separate processes give the same bytes), and the shipped
package's recorded recipe is checked to be the documented one."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from atzoo.io import read_json
from atzoo.hub import sha256_file
from atzoo.zoo import SHIPPED, SYNTHETIC_DEMO

REPO = Path(__file__).resolve().parents[1]
SMALL = ("--set", "epochs=1", "--set", "iters_per_epoch=2", "--set", "num_persons=4", "--set", "image_size=[64,32]")


def atzoo(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-m", "atzoo", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, f"atzoo {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def test_the_documented_command_is_in_the_docs_and_sets_what_the_package_records():
    from atzoo.registry import load_registry
    from atzoo.runner.recipe import resolve_recipe

    assert SYNTHETIC_DEMO.recipe_command in (REPO / "docs" / "weights.md").read_text()
    words = shlex.split(SYNTHETIC_DEMO.recipe_command)
    overrides = dict(words[i + 1].split("=", 1) for i, word in enumerate(words) if word == "--set")
    config = read_json(SYNTHETIC_DEMO.path / "config.json")
    assert config["recipe"]["overrides"] == {key: int(value) for key, value in overrides.items()}
    recipe = resolve_recipe("baseline", config["recipe"]["overrides"], load_registry()).to_json()
    expected = json.loads(json.dumps(recipe))
    recorded_train, expected_train = config["recipe"].pop("train"), expected.pop("train")
    assert config["recipe"] == expected
    # Settings the runner gained after the package was trained are absent from its record; they must be at
    # their defaults, so the recorded recipe still describes the same training.
    assert recorded_train == {key: value for key, value in expected_train.items() if key in recorded_train}
    from atzoo.config import TrainConfig
    defaults = json.loads(TrainConfig().model_dump_json())
    assert {key: expected_train[key] for key in expected_train if key not in recorded_train} == \
        {key: defaults[key] for key in expected_train if key not in recorded_train}


@pytest.mark.slow
def test_the_shipped_results_record_their_provenance():
    from atzoo.formats.metrics import read_results
    from atzoo.formats.packageconfig import read_package_config

    results = read_results(SYNTHETIC_DEMO.path / "results.json")
    provenance = results.provenance
    assert provenance.weights_sha256 == SYNTHETIC_DEMO.sha256 == sha256_file(SYNTHETIC_DEMO.path / "model.safetensors")
    assert provenance.dataset.release == "synthetic"
    assert provenance.dataset.fingerprint == read_package_config(SYNTHETIC_DEMO.path / "config.json").dataset_fingerprint
    assert provenance.weights_sha256 in (SYNTHETIC_DEMO.path / "README.md").read_text()


def test_the_command_gives_the_same_bytes_in_two_processes(tmp_path):
    atzoo("synth", "data", "--preset", "tiny", "--quiet", cwd=tmp_path)
    hashes = []
    for name in ("first", "second"):
        atzoo("train", "baseline", "--data", "data", "--out", f"runs/{name}", *SMALL, cwd=tmp_path)
        atzoo("export", f"runs/{name}", f"packages/{name}", cwd=tmp_path)
        hashes.append(sha256_file(tmp_path / "packages" / name / "model.safetensors"))
    assert hashes[0] == hashes[1]


@pytest.mark.slow
def test_the_wheel_carries_the_shipped_package(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    wheel = next(tmp_path.glob("atzoo-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in SHIPPED:
        for file in package.path.iterdir():
            assert f"atzoo/zoo_packages/{package.folder}/{file.name}" in names
