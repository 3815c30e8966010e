"""Pretrained backbone weights offline: one clear error naming the weights and the ways out, a local
safetensors file through `--set pretrained=PATH`, and nothing left behind by a refused run."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from atzoo.backbones import create_timm_model
from atzoo.errors import AtzooError
from atzoo.registry import load_registry
from atzoo.runner.recipe import build_model, resolve_recipe


@pytest.fixture()
def offline_empty_hub(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_missing_hub_weights_name_the_weights_and_the_ways_out(offline_empty_hub):
    with pytest.raises(AtzooError) as caught:
        create_timm_model("resnet10t", from_hub=True)
    message = str(caught.value)
    assert "timm/resnet10t.c3_in1k" in message and "resnet10t" in message
    assert "--set pretrained=PATH" in message and "--set pretrained=false" in message
    assert "HF_HUB_CACHE" in message


def test_set_pretrained_is_a_shortcut_for_the_backbone_argument():
    pytest.importorskip("atzoo_bot")
    registry = load_registry()
    recipe = resolve_recipe("bot", {"pretrained": False, "epochs": 2}, registry)
    assert recipe.backbone_args["pretrained"] is False and recipe.train.epochs == 2
    assert "pretrained" not in recipe.train.model_dump()
    with pytest.raises(AtzooError, match="not accepted by backbone builtins:tiny_cnn"):
        resolve_recipe("baseline", {"pretrained": False}, registry)   # tiny_cnn has no pretrained weights


def test_a_local_safetensors_file_is_loaded_through_the_recipe(tmp_path):
    import timm

    torch.manual_seed(0)
    source = timm.create_model("resnet10t", pretrained=False, num_classes=7)
    path = tmp_path / "resnet10t.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    from types import SimpleNamespace

    from atzoo.plugin import LossTerm, Method, hookimpl

    @hookimpl
    def atzoo_register_methods(register):
        register(Method(name="timm-net", backbone="timm", losses=(LossTerm("cross_entropy"),),
                        backbone_args={"model_name": "resnet10t", "last_stride_1": False}))

    registry = load_registry(extra_plugins={"t": SimpleNamespace(atzoo_register_methods=atzoo_register_methods)},
                             refresh=True)
    recipe = resolve_recipe("timm-net", {"pretrained": str(path)}, registry)
    model = build_model(recipe, 2, 2, registry)
    loaded = model.backbone.model.state_dict()
    assert torch.equal(loaded["conv1.0.weight"], source.state_dict()["conv1.0.weight"])


@pytest.mark.slow
def test_train_without_the_weights_exits_2_and_leaves_no_run_folder(tiny_synth_root, tmp_path):
    pytest.importorskip("atzoo_bot")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-hub")}
    out = tmp_path / "runs" / "bot"
    done = subprocess.run([sys.executable, "-m", "atzoo", "train", "bot", "--data", str(tiny_synth_root),
                           "--out", str(out), "--set", "num_persons=4"], capture_output=True, text=True, env=env,
                          timeout=900)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "timm/resnet50.tv_in1k" in done.stderr and "--set pretrained=false" in done.stderr
    assert not out.exists()
