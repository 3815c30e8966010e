"""Unit tests of the runner's parts: settings, schedule, checkpoints, run directory, model wrapper."""

import json

import pytest
import torch
from torch import nn

from atzoo.config import TrainConfig, build_train_config, parse_overrides
from atzoo.errors import AtzooError
from atzoo.model import ReIDModel
from atzoo.runner.checkpoint import load_checkpoint, read_checkpoint_epoch, save_checkpoint
from atzoo.runner.optim import build_optimizer, lr_factor, parameter_groups
from atzoo.runner.rundir import RunDir, new_run_dir, open_run_dir


def test_overrides_parse_json_values_and_plain_strings():
    assert parse_overrides(["lr=0.01", "image_size=[128, 64]", "amp=false", "optimizer=adamw", "grad_clip=none"]) == {
        "lr": 0.01, "image_size": [128, 64], "amp": False, "optimizer": "adamw", "grad_clip": None}


def test_override_without_equals_is_refused():
    with pytest.raises(AtzooError, match="key=value"):
        parse_overrides(["lr"])


def test_unknown_setting_names_the_key_and_lists_valid_ones():
    with pytest.raises(AtzooError, match="unknown training setting.*learning_rate.*valid keys:.*lr"):
        build_train_config({"learning_rate": 0.1})


def test_invalid_value_names_the_key_and_value():
    with pytest.raises(AtzooError, match=r"lr=-1"):
        build_train_config({"lr": -1})
    with pytest.raises(AtzooError, match="optimizer='rmsprop'"):
        build_train_config({"optimizer": "rmsprop"})


def test_later_layers_override_earlier_ones():
    config = build_train_config({"lr": 0.1, "epochs": 3}, {"lr": 0.2})
    assert (config.lr, config.epochs) == (0.2, 3)


def test_schedule_warms_up_linearly_then_decays_to_the_floor():
    config = TrainConfig(warmup_epochs=1, warmup_factor=0.1, min_lr_factor=0.002)
    assert lr_factor(0, 100, 10, config) == pytest.approx(0.1)
    assert lr_factor(5, 100, 10, config) == pytest.approx(0.55)
    assert lr_factor(10, 100, 10, config) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, config) == pytest.approx(0.002 + 0.998 * 0.5)
    assert lr_factor(100, 100, 10, config) == pytest.approx(0.002)
    factors = [lr_factor(s, 100, 10, config) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(factors, factors[1:]))


def test_parameter_groups_apply_multipliers_and_no_decay_patterns():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    named = [("blocks.0.weight", model[0].weight), ("blocks.0.bias", model[0].bias),
             ("head.weight", model[1].weight)]
    config = TrainConfig(weight_decay=5e-4, lr=0.01, lr_multipliers={"head": 10.0}, no_weight_decay=("bias",))
    groups = {(g["lr_multiplier"], g["weight_decay"]): g["params"] for g in parameter_groups(named, config)}
    assert groups[(1.0, 5e-4)] == [model[0].weight]
    assert groups[(1.0, 0.0)] == [model[0].bias]
    assert groups[(10.0, 5e-4)] == [model[1].weight]


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_checkpoint_round_trip_restores_model_losses_and_optimizer(tmp_path, optimizer):
    torch.manual_seed(0)
    model, losses = nn.Linear(3, 2), nn.Linear(2, 1)
    config = TrainConfig(optimizer=optimizer, lr=0.1)
    opt = build_optimizer(list(model.named_parameters()) + list(losses.named_parameters(prefix="losses")), config)
    for _ in range(2):
        opt.zero_grad()
        losses(model(torch.randn(4, 3))).sum().backward()
        opt.step()
    save_checkpoint(tmp_path / "c.safetensors", model=model, losses=losses, optimizer=opt, epoch=3, step=7)
    assert read_checkpoint_epoch(tmp_path / "c.safetensors") == 3

    model2, losses2 = nn.Linear(3, 2), nn.Linear(2, 1)
    opt2 = build_optimizer(list(model2.named_parameters()) + list(losses2.named_parameters(prefix="losses")), config)
    assert load_checkpoint(tmp_path / "c.safetensors", model=model2, losses=losses2, optimizer=opt2) == (3, 7)
    assert torch.equal(model.weight, model2.weight) and torch.equal(losses.bias, losses2.bias)
    batch = torch.randn(4, 3)
    for m, l, o in ((model, losses, opt), (model2, losses2, opt2)):
        o.zero_grad()
        l(m(batch)).sum().backward()
        o.step()
    assert torch.equal(model.weight, model2.weight)


def test_damaged_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "checkpoint.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    model = nn.Linear(2, 2)
    with pytest.raises(AtzooError, match="damaged"):
        load_checkpoint(path, model=model, losses=nn.Module(), optimizer=torch.optim.SGD(model.parameters(), lr=1))


def test_run_dir_refuses_a_non_empty_folder_and_a_folder_without_config(tmp_path):
    (tmp_path / "x.txt").write_text("keep me")
    with pytest.raises(AtzooError, match="already exists and is not empty.*--resume"):
        new_run_dir(tmp_path)
    with pytest.raises(AtzooError, match="not a run directory.*config.json"):
        open_run_dir(tmp_path)
    with pytest.raises(AtzooError, match="not a run directory"):
        open_run_dir(tmp_path / "missing")
    assert (tmp_path / "x.txt").read_text() == "keep me"


def test_train_log_ignores_a_torn_line_and_truncates_to_an_epoch(tmp_path):
    run = RunDir(tmp_path)
    for epoch in (1, 2, 3):
        run.append_log({"epoch": epoch, "loss": 1.0 / epoch})
    with open(run.file("train_log.jsonl"), "a") as handle:
        handle.write('{"epoch": 4, "lo')
    assert [r["epoch"] for r in run.read_log()] == [1, 2, 3]
    run.truncate_log(2)
    assert [json.loads(line)["epoch"] for line in run.file("train_log.jsonl").read_text().splitlines()] == [1, 2]


class _SixOutputs(nn.Module):
    def forward(self, images):
        return images.flatten(1)[:, :8].unsqueeze(1).repeat(1, 6, 1)


def test_reid_model_train_and_eval_outputs():
    model = ReIDModel(nn.Sequential(nn.Flatten(), nn.Linear(12, 8)), 8, ("person",), num_persons=5, num_clothes=9)
    images = torch.randn(4, 3, 2, 2)
    out = model.train()(images)
    assert out["features"].shape == (4, 1, 8) and out["embeddings"].shape == (4, 1, 8)
    assert [tuple(l.shape) for l in out["logits"]] == [(4, 5)]
    assert model.eval()(images).shape == (4, 8)
    assert not model.necks[0].bn.bias.requires_grad and torch.count_nonzero(model.necks[0].bn.bias) == 0
    assert model.classifiers[0].bias is None


def test_six_head_model_routes_person_and_clothes_classifiers():
    heads = ("clothes", "person") * 3
    model = ReIDModel(_SixOutputs(), 8, heads, num_persons=5, num_clothes=9)
    out = model.train()(torch.randn(4, 3, 4, 4))
    assert [l.shape[1] for l in out["logits"]] == [9, 5] * 3
    assert model.eval()(torch.randn(2, 3, 4, 4)).shape == (2, 6, 8)


def test_backbone_output_of_the_wrong_shape_is_named():
    model = ReIDModel(nn.Sequential(nn.Flatten(), nn.Linear(12, 7)), 8, ("person",), 5, 9)
    with pytest.raises(AtzooError, match=r"shape \(4, 7\).*expected \(B, 8\)"):
        model(torch.randn(4, 3, 2, 2))
