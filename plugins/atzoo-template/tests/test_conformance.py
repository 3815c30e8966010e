"""Conformance of everything this plugin registers, with the checks atzoo ships for plugin authors."""

from atzoo.registry import load_registry
from atzoo.testing import check_backbone, check_loss, check_method, check_plugin


def test_the_plugin_loads():
    info = {p.name: p for p in load_registry(refresh=True).plugins}["template"]
    assert info.status == "ok", info.error
    assert info.distribution == "atzoo-template"


def test_backbone_conforms_at_its_size_and_a_small_one():
    assert check_backbone("template:template-net")["embed_dim"] == 64
    assert check_backbone("template:template-net", image_size=(32, 16), embed_dim=32)["embed_dim"] == 32


def test_loss_conforms():
    check_loss("template:template-cosface")


def test_method_trains_one_step():
    assert check_method("template:template", build=True)["loss"] > 0


def test_everything_the_plugin_registers():
    report = check_plugin("template", image_size=(64, 32))
    assert [len(report[k]) for k in ("backbones", "losses", "methods")] == [1, 1, 1]
