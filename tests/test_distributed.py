"""Two CPU processes under torchrun (gloo): DDP training, rank-0 writes, gathered evaluation."""

import json
import os
import subprocess
import sys

import pytest

from atzoo.protocol import SCENARIO_NAMES


@pytest.mark.slow
def test_torchrun_two_processes_train_and_evaluate(tiny_synth_root, tmp_path):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "atzoo", "train", "baseline", "--data", str(tiny_synth_root), "--out", str(out),
               "--set", "epochs=1", "--set", "image_size=[32,16]", "--set", "num_workers=0",
               "--set", "num_persons=4", "--set", "num_instances=4", "--set", "cache=false", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted([
        "checkpoint.safetensors", "config.json", "dataset.json", "environment.json", "metrics.json",
        "model.safetensors", "train_log.jsonl"])
    assert json.loads((out / "environment.json").read_text())["world_size"] == 2
    assert len((out / "train_log.jsonl").read_text().splitlines()) == 1

    gathered = json.loads((out / "metrics.json").read_text())
    single = subprocess.run([sys.executable, "-m", "atzoo", "evaluate", str(out), "--json"],
                            capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr
    alone = json.loads(single.stdout[single.stdout.index("{"):])
    for name in SCENARIO_NAMES:
        assert alone[name]["queries"] == gathered[name]["queries"]
        assert alone[name]["mAP"] == pytest.approx(gathered[name]["mAP"], abs=1e-6)
