"""The BoT plugin, installed with pip and found through its entry point, trains on the shared runner."""

import json
import os
import subprocess
import sys
from importlib import metadata

from atzoo.protocol import SCENARIO_NAMES

TINY_BOT = ["--set", "backbone.pretrained=false", "--set", "epochs=1", "--set", "iters_per_epoch=2",
            "--set", "warmup_epochs=0", "--set", "image_size=[64,32]", "--set", "num_persons=4",
            "--set", "num_instances=4", "--set", "num_workers=0", "--set", "cache=false",
            "--set", "eval_batch_size=64"]


def test_bot_is_an_installed_distribution_not_part_of_the_core():
    entry_points = {ep.name: ep for ep in metadata.entry_points(group="atzoo")}
    assert entry_points["bot"].dist.name == "atzoo-bot"
    assert not any(str(path).startswith("atzoo_bot") for path in metadata.files("atzoo") or [])


def test_atzoo_train_bot_runs_on_the_cpu(tiny_synth_root, tmp_path):
    out = tmp_path / "bot"
    done = subprocess.run([sys.executable, "-m", "atzoo", "train", "bot", "--data", str(tiny_synth_root),
                           "--out", str(out), *TINY_BOT, "--json"],
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    recipe = json.loads((out / "config.json").read_text())["recipe"]
    assert recipe["method"]["qualified_name"] == "bot:bot"
    assert recipe["method"]["distribution"] == "atzoo-bot"
    assert recipe["backbone"]["qualified_name"] == "builtins:timm"
    assert recipe["backbone_args"]["model_name"] == "resnet50.tv_in1k"
    assert recipe["backbone_args"]["pretrained"] is False and recipe["backbone_args"]["last_stride_1"] is True
    assert {term["loss"] for term in recipe["losses"]} == {"builtins:cross_entropy", "builtins:triplet",
                                                           "builtins:center"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert all(metrics[name]["queries"] > 0 for name in SCENARIO_NAMES)
