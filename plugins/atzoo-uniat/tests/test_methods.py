"""The Uni-AT recipes hold the published settings, conform, and train through the shared runner;
the ablation command trains the five rows, resumes, and prints the paper's table."""

import json

import pytest

from atzoo.config import build_train_config
from atzoo.errors import AtzooError
from atzoo.registry import load_registry
from atzoo.runner.optim import _lr_multiplier
from atzoo.testing import check_method
from atzoo_uniat import ablation
from atzoo_uniat.methods import (ABLATION_ROWS, CPU_OVERRIDES, METHODS, PUBLISHED_RECIPE,
                                 last_blocks_lr_multipliers)

NAMES = [m.name for m in METHODS]
SMOKE = ablation.BUDGETS["smoke"]


def _method(name: str):
    return load_registry().get("methods", f"uniat:{name}").item


def test_six_methods_are_registered():
    registry = load_registry(refresh=True)
    info = {p.name: p for p in registry.plugins}["uniat"]
    assert info.status == "ok", info.error
    assert set(NAMES) == {"uniat", "uniat-baseline", "uniat-said", "uniat-said-moae", "uniat-said-hdw", "uniat-1tok"}
    assert {f"uniat:{n}" for n in NAMES} <= {e.qualified_name for e in registry.entries("methods")}


def test_every_recipe_holds_the_published_settings():
    for method in METHODS:
        train = build_train_config(method.train)
        assert (train.optimizer, train.momentum, train.nesterov) == ("sgd", 0.9, True)
        assert (train.lr, train.weight_decay, train.grad_clip) == (0.008, 5e-4, 20.0)
        assert (train.warmup_epochs, train.warmup_factor, train.schedule, train.min_lr_factor) == (10, 0.1, "cosine", 0.002)
        assert (train.epochs, train.iters_per_epoch) == (120, 200)
        assert (train.num_persons, train.num_instances, train.modality_balanced) == (8, 8, True)
        assert (train.image_size, train.pad, train.flip, train.erasing) == ((256, 128), 10, 0.5, 0.5)
        assert {"pos_embed", "cls_token", "norm"} <= set(train.no_weight_decay)
        assert method.neck == "bnneck" and method.task_family == "AT-ReID"
    assert PUBLISHED_RECIPE["lr"] == 0.008


def test_the_ablation_rows_differ_only_in_what_the_paper_ablates():
    said = ("clothes", "person") * 3
    rows = {
        "uniat-baseline": (False, ("person",) * 6, "builtins:cross_entropy", None),
        "uniat-said": (False, said, "uniat:said", False),
        "uniat-said-moae": (True, said, "uniat:said", False),
        "uniat-said-hdw": (False, said, "uniat:said", True),
        "uniat": (True, said, "uniat:said", True),
    }
    for name, (moae, heads, loss, hdw) in rows.items():
        method = _method(name)
        assert method.backbone == "uniat:vit-6tok"
        assert method.backbone_args == {"pretrained": True, "moae": moae, "gate": "top1"}
        assert method.heads == heads
        (term,) = method.losses
        assert term.loss == loss and term.args.get("epsilon") == 0.0
        if hdw is not None:
            assert term.args["hdw"] is hdw
    one = _method("uniat-1tok")
    assert (one.backbone, one.heads) == ("uniat:vit-1tok", ("person",))


@pytest.mark.parametrize("name, factor", [
    ("backbone.blocks.11.mlp.fc1.weight", 10.0), ("backbone.blocks.10.attn.qkv.weight", 10.0),
    ("backbone.blocks.1.attn.qkv.weight", 1.0), ("backbone.blocks.9.norm1.weight", 1.0),
    ("backbone.norm.weight", 10.0), ("necks.3.bn.weight", 10.0), ("classifiers.0.weight", 10.0),
    ("backbone.pos_embed", 1.0),
])
def test_the_lr_multipliers_pick_the_last_two_blocks_the_final_norm_and_the_heads(name, factor):
    assert _lr_multiplier(name, last_blocks_lr_multipliers(12)) == factor


def test_the_lr_multipliers_match_the_real_models_parameter_names():
    """Built at depth 4, exactly blocks 2 and 3, the final norm, necks and classifiers get x10."""
    import re

    from atzoo.runner.recipe import build_model, resolve_recipe

    registry = load_registry()
    overrides = {**CPU_OVERRIDES, "backbone.depth": 4, "lr_multipliers": last_blocks_lr_multipliers(4)}
    recipe = resolve_recipe("uniat:uniat", overrides, registry)
    model = build_model(recipe, 4, 6, registry)
    boosted = {n for n, _ in model.named_parameters() if _lr_multiplier(n, recipe.train.lr_multipliers) == 10.0}
    blocks = {int(m.group(1)) for n in boosted if (m := re.search(r"blocks\.(\d+)\.", n))}
    assert blocks == {2, 3}
    assert any(n.startswith("necks.") for n in boosted) and any(n.startswith("classifiers.") for n in boosted)
    final_norm = [n for n in boosted if "blocks." not in n and "norm" in n]
    assert final_norm, f"no final norm among the x10 parameters: {sorted(boosted)}"
    assert all("blocks." in n or n.startswith(("necks.", "classifiers.")) or n in final_norm for n in boosted)


@pytest.mark.parametrize("name", NAMES)
def test_each_recipe_conforms_and_takes_a_training_step(name):
    summary = check_method(f"uniat:{name}", build=True, overrides=CPU_OVERRIDES, image_size=(64, 32))
    assert summary["loss"] > 0


def test_the_one_token_variant_trains_and_evaluates_through_the_runner(tiny_synth_root, tmp_path):
    from atzoo.runner import train

    run = train("uniat:uniat-1tok", tiny_synth_root, tmp_path / "run", SMOKE, progress=False)
    metrics = json.loads(run.file("metrics.json").read_text())
    assert 0.0 <= metrics["Any-Time"]["rank1"] <= 1.0
    config = json.loads(run.file("config.json").read_text())
    assert config["recipe"]["train"]["epochs"] == 1


def test_the_ablation_trains_five_rows_resumes_and_prints_the_table(tiny_synth_root, tmp_path, capsys, monkeypatch):
    out = tmp_path / "ablation"
    assert ablation.main(["--data", str(tiny_synth_root), "--out", str(out), "--budget", "smoke", "--quiet"]) == 0
    table = capsys.readouterr().out
    for name in ABLATION_ROWS:
        assert (out / name / "metrics.json").is_file()
        assert f"| {name} |" in table
    assert "55.80/41.38" in table and "50.90/34.75" in table
    assert table.strip() == (out / "ablation.md").read_text().strip()
    stamp = (out / "uniat" / "metrics.json").stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("a finished row was trained again")

    monkeypatch.setattr("atzoo.runner.train", no_training)
    results = ablation.run_ablation(tiny_synth_root, out, budget="smoke", progress=False)
    assert list(results) == list(ABLATION_ROWS)
    assert (out / "uniat" / "metrics.json").stat().st_mtime_ns == stamp

    with pytest.raises(AtzooError, match="budget"):
        ablation.run_ablation(tiny_synth_root, out, budget="cpu", progress=False)
    assert ablation.main(["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "x"), "--quiet"]) == 2


def test_a_row_with_a_trained_model_but_no_metrics_is_only_evaluated(tmp_path, monkeypatch):
    run_dir = tmp_path / "uniat"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{}")
    (run_dir / "model.safetensors").write_bytes(b"")
    calls = []

    def fake_evaluate(path, data_root, **kwargs):
        calls.append(path)
        (path / "metrics.json").write_text("{}")
        return {}

    monkeypatch.setattr("atzoo.runner.evaluate_run", fake_evaluate)
    monkeypatch.setattr("atzoo.runner.train", lambda *a, **k: pytest.fail("trained again"))
    assert ablation.ensure_run("uniat:uniat", tmp_path, run_dir, {}, progress=False) == {}
    assert calls == [run_dir]


def test_unknown_budgets_are_refused():
    with pytest.raises(AtzooError, match="unknown budget"):
        ablation.budget_overrides("gpu-week")
    assert ablation.budget_overrides("smoke", {"lr": 0.1})["lr"] == 0.1


def test_the_uniat_model_has_six_bnneck_heads_in_train_and_eval_mode():
    import torch

    from atzoo.runner.recipe import build_model, resolve_recipe

    registry = load_registry()
    recipe = resolve_recipe("uniat", dict(CPU_OVERRIDES), registry)
    torch.manual_seed(0)
    model = build_model(recipe, num_persons=5, num_clothes=9, registry=registry)
    images = torch.randn(4, 3, 64, 32)
    model.train()
    out = model(images)
    dim = model.embed_dim
    assert out["features"].shape == out["embeddings"].shape == (4, 6, dim)
    assert [logits.shape[1] for logits in out["logits"]] == [9, 5, 9, 5, 9, 5]
    for neck, classifier in zip(model.necks, model.classifiers):
        assert not neck.bn.bias.requires_grad and torch.count_nonzero(neck.bn.bias) == 0
        assert classifier.bias is None
    batch_mean = out["embeddings"].mean(0)
    assert torch.allclose(batch_mean, torch.zeros_like(batch_mean), atol=1e-5)
    model.eval()
    with torch.no_grad():
        embeddings = model(images)
        expected = torch.stack([neck(feature) for neck, feature in
                                zip(model.necks, model.backbone_features(images).unbind(1))], dim=1)
    assert embeddings.shape == (4, 6, dim) and torch.equal(embeddings, expected)
    assert not torch.allclose(embeddings.mean(0), torch.zeros(6, dim), atol=1e-3)
