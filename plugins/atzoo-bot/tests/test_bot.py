"""The BoT plugin loads, its recipes hold the published settings and conform."""

from atzoo.registry import load_registry
from atzoo.testing import check_method, check_plugin


def test_the_plugin_loads_with_two_methods():
    registry = load_registry(refresh=True)
    info = {p.name: p for p in registry.plugins}["bot"]
    assert info.status == "ok", info.error
    assert info.distribution == "atzoo-bot"
    assert info.counts["methods"] == 2
    assert {"bot:bot", "bot:bot-no-center"} <= {e.qualified_name for e in registry.entries("methods")}


def test_recipe_is_the_published_one():
    method = load_registry().get("methods", "bot:bot").item
    assert method.backbone == "builtins:resnet50" and method.backbone_args["last_stride_1"] is True
    assert method.neck == "bnneck" and method.heads == ("person",)
    train = method.train
    assert (train["optimizer"], train["lr"], train["weight_decay"]) == ("adam", 3.5e-4, 5e-4)
    assert (train["warmup_epochs"], train["epochs"]) == (10, 120)
    assert (train["num_persons"], train["num_instances"], train["image_size"]) == (16, 4, [256, 128])
    assert train["erasing"] == 0.5
    losses = {term.loss: term for term in method.losses}
    assert losses["builtins:cross_entropy"].args["epsilon"] == 0.1
    assert losses["builtins:triplet"].args["margin"] == 0.3


def test_the_full_recipe_has_a_weighted_center_loss_and_the_variant_none():
    full = load_registry().get("methods", "bot:bot").item
    assert [(t.loss, t.weight) for t in full.losses][-1] == ("builtins:center", 5e-4)
    variant = load_registry().get("methods", "bot:bot-no-center").item
    assert "builtins:center" not in {t.loss for t in variant.losses}


def test_both_recipes_conform():
    report = check_plugin("bot")
    assert [m["name"] for m in report["methods"]] == ["bot:bot", "bot:bot-no-center"]


def test_one_training_step_without_downloading_weights():
    summary = check_method("bot:bot", build=True, overrides={"backbone.pretrained": False},
                           image_size=(64, 32))
    assert summary["loss"] > 0
