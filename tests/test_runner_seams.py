"""The shared runner's seams: multi-step schedule, a loss's own optimizer, erasing ranges, a custom
training step, recipe files, one data loader per run, and settings checked before anything is
read, cached or written."""

from __future__ import annotations

import json
import types

import pytest
import torch
from torch import nn

import atzoo.registry as registry_module
import atzoo.runner.trainer as trainer_module
from atzoo.cli.main import main
from atzoo.config import TrainConfig, build_train_config
from atzoo.data.transforms import build_train_transform
from atzoo.errors import AtzooError
from atzoo.plugin import LossTerm, Method, hookimpl
from atzoo.registry import load_registry
from atzoo.runner.checkpoint import load_checkpoint, save_checkpoint
from atzoo.runner.optim import OptimizerSet, build_optimizer, lr_factor, set_learning_rate
from atzoo.runner.recipe import read_recipe_file, resolve_recipe

TINY = {"epochs": 1, "iters_per_epoch": 2, "image_size": [32, 16], "num_workers": 0, "num_persons": 4,
        "num_instances": 2, "cache": False, "eval_batch_size": 64, "warmup_epochs": 0}
TINY_SET = [arg for key, value in TINY.items() for arg in ("--set", f"{key}={json.dumps(value)}")]


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch):
    monkeypatch.delenv("ATZOO_STRICT", raising=False)
    monkeypatch.delenv("ATZOO_PLUGINS", raising=False)
    monkeypatch.setattr(registry_module, "_CACHE", {})


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# schedule ------------------------------------------------------------------------------------


def test_multistep_multiplies_by_gamma_at_each_milestone_after_the_warm_up():
    config = TrainConfig(schedule="multistep", milestones=(2, 4), gamma=0.5, warmup_epochs=1, warmup_factor=0.2)
    factors = [lr_factor(epoch * 10, 60, 10, config, steps_per_epoch=10) for epoch in range(6)]
    assert factors == pytest.approx([0.2, 1.0, 0.5, 0.5, 0.25, 0.25])
    assert lr_factor(5, 60, 10, config, steps_per_epoch=10) == pytest.approx(0.6)


@pytest.mark.parametrize("settings, message", [
    ({"schedule": "multistep"}, "needs milestones"),
    ({"milestones": [70, 40]}, "strictly increasing"),
    ({"milestones": [0]}, "milestones.0=0"),
    ({"gamma": 0}, "gamma=0"),
    ({"erasing_scale": [0.4, 0.02]}, "erasing_scale=[0.4, 0.02]: expected (min, max) with min <= max"),
    ({"erasing_ratio": [0.3, 1000]}, "allowed: > 0 and <= 100"),
    ({"loss_optimizers": {"center": {"lr": 0.5, "lr_rate": 1}}}, "loss_optimizers.center.lr_rate"),
])
def test_schedule_and_augmentation_settings_are_checked(settings, message):
    with pytest.raises(AtzooError) as raised:
        build_train_config(settings)
    assert message in str(raised.value)


# a loss's own optimizer ------------------------------------------------------------------------


class Centres(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.centers = nn.Parameter(torch.zeros(3, 2))


def _two_optimizers():
    torch.manual_seed(0)
    model, losses = nn.Linear(3, 2), nn.ModuleList([Centres()])
    config = TrainConfig(optimizer="adam", lr=0.01, loss_optimizers={"center": {"optimizer": "sgd", "lr": 0.5,
                                                                               "undo_loss_weight": True}})
    optimizer = build_optimizer([*model.named_parameters(), *losses.named_parameters(prefix="losses")], config,
                                {"center": (0.25, ["losses.0.centers"])})
    return model, losses, optimizer


def _step(model, losses, optimizer, batch):
    optimizer.zero_grad()
    (model(batch).sum() + 0.25 * (losses[0].centers - 1).pow(2).sum()).backward()
    optimizer.step()


def test_a_loss_optimizer_trains_its_parameters_at_a_fixed_lr_on_the_unweighted_gradient():
    model, losses, optimizer = _two_optimizers()
    assert isinstance(optimizer, OptimizerSet)
    adam, sgd = optimizer.optimizers
    assert sgd.param_groups[0]["params"] == [losses[0].centers]
    assert all(p is not losses[0].centers for g in adam.param_groups for p in g["params"])
    set_learning_rate(optimizer, 0.01, 0.1)
    assert sgd.param_groups[0]["lr"] == 0.5 and adam.param_groups[0]["lr"] == pytest.approx(0.001)
    _step(model, losses, optimizer, torch.randn(4, 3))
    # gradient of 0.25 * (c - 1)^2 at c = 0 is -0.5, divided by the weight: -2; SGD lr 0.5 moves c to 1.
    assert torch.allclose(losses[0].centers, torch.ones(3, 2))


def test_two_optimizers_survive_a_checkpoint_round_trip(tmp_path):
    model, losses, optimizer = _two_optimizers()
    for _ in range(2):
        _step(model, losses, optimizer, torch.randn(4, 3))
    save_checkpoint(tmp_path / "c.safetensors", model=model, losses=losses, optimizer=optimizer, epoch=1, step=2)
    model2, losses2, optimizer2 = _two_optimizers()
    assert load_checkpoint(tmp_path / "c.safetensors", model=model2, losses=losses2, optimizer=optimizer2) == (1, 2)
    batch = torch.randn(4, 3)
    for m, l, o in ((model, losses, optimizer), (model2, losses2, optimizer2)):
        _step(m, l, o, batch)
    assert torch.equal(model.weight, model2.weight) and torch.equal(losses[0].centers, losses2[0].centers)


# augmentation ranges ---------------------------------------------------------------------------


def test_erasing_area_and_aspect_ranges_reach_the_transform():
    transform = build_train_transform((64, 32), ((0.5,) * 3, (0.5,) * 3), pad=0, flip=0.0, erasing=1.0,
                                      erasing_scale=(0.25, 0.25), erasing_ratio=(1.0, 1.0))
    image = transform(torch.full((3, 64, 32), 255, dtype=torch.uint8), 7)
    assert int((image[0] == 0).sum()) == 23 * 23  # round(sqrt(64 * 32 * 0.25)) squared


# a custom training step ------------------------------------------------------------------------


def test_a_method_with_its_own_training_step_keeps_checkpoints_and_logs(tmp_path, tiny_synth_root):
    calls = []

    def two_views(model, batch, compute_losses):
        calls.append(batch["image"].shape[0])
        first, parts = compute_losses(model(batch["image"]), batch)
        second, _ = compute_losses(model(batch["image"].flip(-1)), batch)
        return (first + second) / 2, parts

    plugin = types.SimpleNamespace(atzoo_register_methods=hookimpl(lambda register: register(Method(
        name="two-view", backbone="builtins:tiny_cnn", losses=(LossTerm("builtins:cross_entropy"),),
        train_step=two_views))))
    registry = load_registry(extra_plugins={"views": plugin})
    run = trainer_module.train("views:two-view", tiny_synth_root, tmp_path / "run", dict(TINY), registry=registry,
                               progress=False)
    assert calls == [8, 8]
    assert run.file("checkpoint.safetensors").exists() and run.file("model.safetensors").exists()
    log = [json.loads(line) for line in run.file("train_log.jsonl").read_text().splitlines()]
    assert log[0]["step"] == 2 and log[0]["builtins:cross_entropy"] > 0


def test_the_data_loader_is_built_once_per_run(tmp_path, tiny_synth_root, monkeypatch):
    built = []
    real = trainer_module.train_loader
    monkeypatch.setattr(trainer_module, "train_loader", lambda *a, **k: built.append(k) or real(*a, **k))
    trainer_module.train("builtins:baseline", tiny_synth_root, tmp_path / "run", {**TINY, "epochs": 3},
                         progress=False)
    assert len(built) == 1


# recipe files ------------------------------------------------------------------------------------


def test_describe_writes_a_recipe_file_that_train_reads_back(tmp_path, tiny_synth_root, capsys):
    code, yaml_text, _ = run_cli(capsys, "describe", "methods", "bot", "--format", "yaml")
    assert code == 0 and yaml_text.startswith("# Recipe of method bot:bot")
    recipe_file = tmp_path / "bot.yaml"
    recipe_file.write_text(yaml_text)
    method, overrides = read_recipe_file(recipe_file)
    assert method == "bot:bot"
    assert resolve_recipe(method, overrides, load_registry()).to_json() == \
        {**resolve_recipe("bot:bot", {}, load_registry()).to_json(), "overrides": overrides}

    small = tmp_path / "baseline.yaml"
    small.write_text("method: builtins:baseline\ntrain:\n  lr: 0.001\n  epochs: 1\n")
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--config", str(small), "--data", str(tiny_synth_root), "--out",
                           str(out), *TINY_SET, "--set", "seed=3", "--json")
    assert code == 0, err
    train = json.loads((out / "config.json").read_text())["recipe"]["train"]
    assert (train["lr"], train["seed"], train["epochs"]) == (0.001, 3, 1)


@pytest.mark.parametrize("name, text, message", [
    ("typo.yaml", "method: builtins:baseline\ntrian:\n  lr: 0.1\n", "unknown key(s) trian"),
    ("typo-setting.yaml", "method: builtins:baseline\ntrain:\n  lr_rate: 0.1\n", "unknown training setting(s) lr_rate"),
    ("syntax.yaml", "method: builtins:baseline\ntrain:\n  lr: [0.1\n  epochs: 2\n", "YAML syntax error at line 4 column 9"),
    ("twice.yaml", "method: builtins:baseline\ntrain:\n  lr: 0.1\n  lr: 0.2\n", "line 4: key 'lr' is given twice"),
    ("twice.json", '{"method": "builtins:baseline", "train": {"lr": 0.1, "lr": 0.2}}', "the key 'lr' appears twice"),
    ("broken.json", '{"method": "builtins:baseline",\n "train": {lr: 0.1}}', "at line 2, column 12"),
    ("nan.yaml", "method: builtins:baseline\ntrain:\n  lr: .nan\n", "lr=nan: Input should be a finite number"),
    ("size.yaml", "method: builtins:baseline\ntrain:\n  image_size: [0, 0]\n", "allowed: >= 16 and <= 1024"),
])
def test_a_bad_recipe_file_is_refused_with_its_line_and_nothing_is_written(tmp_path, capsys, name, text, message):
    recipe_file = tmp_path / name
    recipe_file.write_text(text)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--config", str(recipe_file), "--data", str(tmp_path / "no-data"),
                           "--out", str(out))
    assert code == 2 and message in err, err
    assert str(recipe_file) in err or "setting" in err
    assert not out.exists()


def test_method_and_recipe_file_must_agree(tmp_path, capsys):
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text("method: builtins:baseline\n")
    code, _, err = run_cli(capsys, "train", "bot", "--config", str(recipe_file), "--out", str(tmp_path / "run"))
    assert code == 2 and "differs from the method 'builtins:baseline'" in err


# bounds and validation before anything is written --------------------------------------------------


@pytest.mark.parametrize("size", ["[0,0]", "[100000,100000]"])
def test_absurd_image_sizes_are_refused_before_the_data_is_read_or_cached(tmp_path, capsys, monkeypatch, size):
    cache = tmp_path / "cache"
    monkeypatch.setenv("ATZOO_CACHE_DIR", str(cache))
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "builtins:baseline", "--data", str(tmp_path / "no-such-data"),
                           "--out", str(out), "--set", f"image_size={size}")
    assert code == 2
    assert "image_size.0=" in err and "(allowed: >= 16 and <= 1024)" in err
    assert not out.exists() and not cache.exists()


@pytest.mark.parametrize("setting, message", [
    ("num_persons=500", "lower num_persons"),
    ("backbone.width=0", "width"),
    ("backbone.widht=3", "not accepted by backbone builtins:tiny_cnn"),
    ("milestones=[5,3]", "expected strictly increasing epochs"),
    ("schedule=multistep", "needs milestones"),
    ("pad=40", "is larger than the image (32x16)"),
    ("erasing_ratio=[3,0.3]", "expected (min, max) with min <= max"),
    ('lr_multipliers={"backbone": -1}', "lr_multipliers"),
    ('loss_optimizers={"nope": {}}', "must name exactly one of the method's losses"),
    ("optimizer=lamb", "optimizer"),
    ("lr_rate=0.1", "unknown training setting"),
])
def test_a_run_that_cannot_start_leaves_no_folder(tmp_path, tiny_synth_root, capsys, setting, message):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "builtins:baseline", "--data", str(tiny_synth_root), "--out", str(out),
                           *TINY_SET, "--set", setting)
    assert code != 0 and message in err
    assert not out.exists()


@pytest.mark.parametrize("setting, message", [
    ("backbone.widht=3", "backbone_args ['backbone.widht']: not accepted by backbone builtins:tiny_cnn"),
    ("erasing_scale=[0.4,0.1]", "erasing_scale=[0.4, 0.1]: expected (min, max) with min <= max"),
    ('loss_optimizers={"nope": {}}', "loss_optimizers key 'nope' must name exactly one of the method's losses"),
])
def test_the_service_refuses_what_train_refuses(tmp_path, tiny_synth_root, capsys, setting, message):
    from atzoo.config import parse_overrides
    from atzoo.service.control import submit_train

    with pytest.raises(AtzooError) as raised:
        submit_train(tmp_path / "runner", "builtins:baseline", tiny_synth_root, [setting])
    assert message in str(raised.value)
    with pytest.raises(AtzooError) as trained:
        resolve_recipe("builtins:baseline", parse_overrides([setting]), load_registry())
    assert str(trained.value) == str(raised.value)
    assert not (tmp_path / "runner").exists()
