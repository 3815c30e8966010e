"""Plugin discovery, validation, failure isolation, strict mode, allow-list and name resolution."""

import importlib.metadata
import json
import re
import subprocess
import sys
import types

import pytest

import atzoo
import atzoo.registry as registry_module
from atzoo.errors import AtzooError
from atzoo.plugin import Backbone, Loss, LossTerm, Method, PretrainedWeights, hookimpl
from atzoo.registry import PluginError, load_registry


def _factory(*args, **kwargs):
    return None


def plugin(**hooks) -> types.SimpleNamespace:
    """A plugin object from hook functions: plugin(losses=fn) implements atzoo_register_losses."""
    return types.SimpleNamespace(**{f"atzoo_register_{kind}": hookimpl(fn) for kind, fn in hooks.items()})


def registering(kind: str, *items) -> types.SimpleNamespace:
    def hook(register):
        for item in items:
            register(item)
    return plugin(**{kind: hook})


def loss(name: str, consumes=("logits", "target")) -> Loss:
    return Loss(name=name, factory=_factory, consumes=consumes)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    monkeypatch.delenv("ATZOO_STRICT", raising=False)
    monkeypatch.delenv("ATZOO_PLUGINS", raising=False)
    monkeypatch.setattr(registry_module, "_CACHE", {})


def info_of(registry, name):
    return {p.name: p for p in registry.plugins}[name]


def test_builtins_are_discovered_through_their_entry_point():
    registry = load_registry()
    info = info_of(registry, "builtins")
    assert info.status == "ok" and info.distribution == "atzoo" and info.version == atzoo.__version__
    assert info.counts["backbones"] >= 4 and info.counts["losses"] >= 3 and info.counts["methods"] >= 1
    assert {"tiny_cnn", "timm", "resnet18", "resnet50"} <= set(registry.names("backbones"))
    entry = registry.get("methods", "baseline")
    assert entry.qualified_name == "builtins:baseline" and entry.distribution == "atzoo"


def test_the_same_arguments_give_the_cached_registry_unless_refreshed():
    first = load_registry()
    assert load_registry() is first
    assert load_registry(refresh=True) is not first


def test_a_plugin_that_fails_to_import_is_recorded_and_the_others_work(monkeypatch):
    real = importlib.metadata.entry_points
    broken = importlib.metadata.EntryPoint(name="broken", value="atzoo_no_such_module_xyz", group="atzoo")
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda **kw: [*real(**kw), broken] if kw.get("group") == "atzoo" else real(**kw))
    registry = load_registry()
    info = info_of(registry, "broken")
    assert info.status == "failed" and "atzoo_no_such_module_xyz" in info.error
    assert registry.get("methods", "baseline").plugin == "builtins"
    with pytest.raises(PluginError, match="broken.*atzoo_no_such_module_xyz"):
        load_registry(strict=True)


def test_a_raising_hook_drops_every_item_of_its_plugin():
    def losses(register):
        register(loss("kept_if_ok"))

    def methods(register):
        raise RuntimeError("recipe exploded")

    registry = load_registry(extra_plugins={"boom": plugin(losses=losses, methods=methods)})
    info = info_of(registry, "boom")
    assert info.status == "failed" and "RuntimeError: recipe exploded" in info.error
    assert "kept_if_ok" not in registry.names("losses")
    assert info.counts == {"backbones": 0, "losses": 0, "methods": 0, "weights": 0}


@pytest.mark.parametrize("kind, item, message", [
    ("losses", loss("Bad Name"), "not a valid name"),
    ("losses", loss("pixels", consumes=("pixels",)), "unknown input.*pixels"),
    ("losses", Loss(name="nofactory", factory="not callable", consumes=("logits",)), "factory must be callable"),
    ("losses", Backbone(name="wrongkind", factory=_factory, embed_dim=8), "expected an atzoo.plugin.Loss"),
    ("backbones", Backbone(name="b", factory=_factory, embed_dim=0), "embed_dim"),
    ("backbones", Backbone(name="b", factory=_factory, embed_dim=8, num_outputs=3), "num_outputs"),
    ("methods", Method(name="m", backbone="tiny_cnn", losses=(LossTerm("triplet"),), heads=("face",)), "face"),
    ("methods", Method(name="m", backbone="tiny_cnn", losses=()), "losses must be a non-empty"),
    ("methods", Method(name="m", backbone="tiny_cnn", losses=(LossTerm("triplet", heads=(3,)),)), "past"),
    ("weights", PretrainedWeights(method="baseline", tag="v1", repo_id="org/x", revision="main", sha256="abc"),
     "sha256"),
])
def test_an_invalid_item_fails_its_plugin_with_a_clear_error(kind, item, message):
    registry = load_registry(extra_plugins={"bad": registering(kind, item)})
    info = info_of(registry, "bad")
    assert info.status == "failed"
    assert re.search(message, info.error), info.error
    assert registry.get("losses", "triplet").plugin == "builtins"


def test_registering_a_name_twice_in_one_plugin_fails_it():
    registry = load_registry(extra_plugins={"twice": registering("losses", loss("same"), loss("same"))})
    info = info_of(registry, "twice")
    assert info.status == "failed" and "'same' twice" in info.error
    assert "same" not in registry.names("losses")


def test_a_misspelled_hook_fails_the_plugin():
    def atzoo_register_backbone(register):
        pass
    registry = load_registry(extra_plugins={"typo": types.SimpleNamespace(
        atzoo_register_backbone=hookimpl(atzoo_register_backbone))})
    info = info_of(registry, "typo")
    assert info.status == "failed" and "atzoo_register_backbone" in info.error


def test_a_class_instance_can_be_a_plugin():
    class Plugin:
        @hookimpl
        def atzoo_register_losses(self, register):
            register(loss("from_instance"))

    registry = load_registry(extra_plugins={"inst": Plugin()})
    entry = registry.get("losses", "from_instance")
    assert entry.qualified_name == "inst:from_instance" and entry.distribution == "" and entry.version == ""
    assert info_of(registry, "inst").hooks == ("atzoo_register_losses",)


def test_strict_mode_from_the_argument_and_the_environment(monkeypatch):
    bad = {"bad": registering("losses", loss("BAD"))}
    with pytest.raises(PluginError, match="1 plugin.*bad"):
        load_registry(strict=True, extra_plugins=bad)
    monkeypatch.setenv("ATZOO_STRICT", "1")
    with pytest.raises(PluginError):
        load_registry(extra_plugins=bad, refresh=True)
    assert load_registry(strict=False, extra_plugins=bad).failed()[0].name == "bad"


def test_the_allow_list_keeps_builtins_and_disables_the_rest(monkeypatch):
    extras = {"one": registering("losses", loss("l1")), "two": registering("losses", loss("l2"))}
    registry = load_registry(allow=["one"], extra_plugins=extras)
    assert info_of(registry, "two").status == "disabled"
    assert "l1" in registry.names("losses") and "l2" not in registry.names("losses")
    assert "baseline" in registry.names("methods")
    with pytest.raises(AtzooError, match="two.*not in ATZOO_PLUGINS"):
        registry.get("losses", "two:l2")
    monkeypatch.setenv("ATZOO_PLUGINS", "two")
    registry = load_registry(extra_plugins=extras, refresh=True)
    assert info_of(registry, "one").status == "disabled" and "l2" in registry.names("losses")


def test_a_short_name_of_two_plugins_is_ambiguous_and_qualified_names_work():
    extras = {"alpha": registering("losses", loss("dup")), "beta": registering("losses", loss("dup"))}
    registry = load_registry(extra_plugins=extras)
    with pytest.raises(AtzooError, match="ambiguous.*alpha:dup and beta:dup"):
        registry.get("losses", "dup")
    assert registry.get("losses", "beta:dup").plugin == "beta"
    names = registry.names("losses")
    assert "alpha:dup" in names and "beta:dup" in names and "dup" not in names
    assert registry.names("losses", "dup") == ["alpha:dup", "beta:dup"]


def test_unknown_names_suggest_close_matches_and_the_list_command():
    registry = load_registry()
    with pytest.raises(AtzooError, match=r"unknown method 'basline'; did you mean 'baseline'.*atzoo list methods"):
        registry.get("methods", "basline")
    with pytest.raises(AtzooError, match=r"unknown loss 'builtins:tripplet'.*builtins:triplet"):
        registry.get("losses", "builtins:tripplet")
    with pytest.raises(AtzooError, match="unknown kind"):
        registry.get("models", "baseline")


def test_unknown_names_mention_failed_plugins():
    registry = load_registry(extra_plugins={"bad": registering("losses", loss("BAD"))})
    with pytest.raises(AtzooError, match="bad failed to load"):
        registry.get("losses", "nothing_like_this")
    with pytest.raises(AtzooError, match="plugin 'bad'.*failed to load"):
        registry.get("losses", "bad:anything")


def test_names_filter_with_wildcards_like_timm():
    registry = load_registry()
    assert registry.names("backbones", "resnet*") == ["resnet18", "resnet50"]
    assert registry.names("backbones", "builtins:tiny*") == ["tiny_cnn"]
    assert registry.names("backbones", "nothing*") == []


def test_weights_are_found_for_their_method():
    weights = PretrainedWeights(method="builtins:baseline", tag="synthetic-v1", repo_id="org/atzoo-baseline",
                                revision="0" * 40, sha256="a" * 64)
    registry = load_registry(extra_plugins={"zoo": registering("weights", weights)})
    found = registry.weights_for("baseline")
    assert [e.qualified_name for e in found] == ["zoo:baseline.synthetic-v1"]
    assert found[0].item.repo_id == "org/atzoo-baseline"


def test_public_api_lists_and_creates(monkeypatch):
    assert "baseline" in atzoo.list_methods()
    assert atzoo.list_backbones("tiny*") == ["tiny_cnn"]
    assert "triplet" in atzoo.list_losses()
    assert atzoo.get_method("baseline").backbone == "builtins:tiny_cnn"
    assert atzoo.create_backbone("tiny_cnn", embed_dim=16).embed_dim == 16
    with pytest.raises(AtzooError, match="builtins:tiny_cnn does not accept.*depth"):
        atzoo.create_backbone("tiny_cnn", depth=3)
    with pytest.raises(AttributeError):
        atzoo.no_such_function


def test_importing_atzoo_and_listing_does_not_import_torch():
    code = ("import sys, json, atzoo; atzoo.list_methods(); atzoo.list_backbones(); "
            "print(json.dumps([m for m in ('torch', 'timm') if m in sys.modules]))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(output) == []
