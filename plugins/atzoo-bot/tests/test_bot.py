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


def test_the_variant_has_no_center_loss():
    """Every published value of the full recipe is checked in atzoo's tests/test_bot_recipe.py."""
    variant = load_registry().get("methods", "bot:bot-no-center").item
    assert "builtins:center" not in {t.loss for t in variant.losses}
    assert "loss_optimizers" not in variant.train


def test_both_recipes_conform():
    report = check_plugin("bot")
    assert [m["name"] for m in report["methods"]] == ["bot:bot", "bot:bot-no-center"]


def test_one_training_step_without_downloading_weights():
    summary = check_method("bot:bot", build=True, overrides={"backbone.pretrained": False},
                           image_size=(64, 32))
    assert summary["loss"] > 0
