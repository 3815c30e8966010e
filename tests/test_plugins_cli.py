"""`atzoo plugins`, `atzoo list`, `atzoo describe`, `--strict`, and the installed plugin packages."""

import importlib.metadata
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

import atzoo.registry as registry_module
from atzoo.cli.main import cli


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch):
    monkeypatch.delenv("ATZOO_STRICT", raising=False)
    monkeypatch.delenv("ATZOO_PLUGINS", raising=False)
    monkeypatch.setattr(registry_module, "_CACHE", {})


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_plugins_lists_builtins_bot_and_template_as_ok():
    result = invoke("plugins", "--json")
    assert result.exit_code == 0, result.output
    plugins = {p["name"]: p for p in json.loads(result.output)}
    assert plugins["builtins"]["status"] == "ok" and plugins["builtins"]["distribution"] == "atzoo"
    assert plugins["bot"]["status"] == "ok" and plugins["bot"]["distribution"] == "atzoo-bot"
    assert plugins["bot"]["counts"]["methods"] == 2
    assert plugins["template"]["status"] == "ok" and plugins["template"]["hooks"] == [
        "atzoo_register_backbones", "atzoo_register_losses", "atzoo_register_methods"]


def test_plugins_table_names_every_plugin():
    result = invoke("plugins")
    assert result.exit_code == 0
    for text in ("builtins", "atzoo-bot", "atzoo-template", "ok"):
        assert text in result.output


def test_list_methods_json_and_pattern():
    result = invoke("list", "methods", "--json")
    assert result.exit_code == 0
    methods = {m["name"]: m for m in json.loads(result.output)}
    assert {"baseline", "bot", "bot-no-center", "template"} <= set(methods)
    assert methods["bot"]["qualified_name"] == "bot:bot" and methods["bot"]["version"] == "0.1.0"
    result = invoke("list", "backbones", "res*")
    assert result.exit_code == 0
    assert "resnet18" in result.output and "resnet50" in result.output and "tiny_cnn" not in result.output


def test_list_refuses_an_unknown_kind():
    result = invoke("list", "models")
    assert result.exit_code == 2 and "models" in result.output


def test_describe_a_method_shows_provider_and_resolved_recipe():
    result = invoke("describe", "methods", "bot", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["provider"] == {"qualified_name": "bot:bot", "plugin": "bot", "distribution": "atzoo-bot",
                                "version": "0.1.0"}
    recipe = data["recipe"]
    assert recipe["backbone"]["qualified_name"] == "builtins:timm"
    assert recipe["backbone"]["args"] == {"model_name": "resnet50.tv_in1k", "pretrained": True, "last_stride_1": True}
    assert [loss["qualified_name"] for loss in recipe["losses"]] == ["builtins:cross_entropy", "builtins:triplet",
                                                                          "builtins:center"]
    assert recipe["losses"][1]["sampler"] == "pk" and recipe["losses"][1]["consumes"] == ["features", "target"]
    assert recipe["train"]["epochs"] == 120 and recipe["train"]["momentum"] == 0.9
    assert recipe["train"]["milestones"] == [40, 70] and recipe["train"]["loss_optimizers"]["builtins:center"]["lr"] == 0.5
    assert recipe["problems"] == []


def test_describe_a_loss_as_text():
    result = invoke("describe", "losses", "triplet")
    assert result.exit_code == 0
    assert "builtins:triplet" in result.output and "features" in result.output and "pk" in result.output


def test_describe_an_unknown_name_suggests_and_exits_2():
    result = invoke("describe", "methods", "bot-no-centre")
    assert result.exit_code == 2
    assert "unknown method 'bot-no-centre'" in result.output and "bot-no-center" in result.output


def test_strict_turns_a_failed_plugin_into_exit_2(monkeypatch):
    real = importlib.metadata.entry_points
    broken = importlib.metadata.EntryPoint(name="broken", value="atzoo_no_such_module_xyz", group="atzoo")
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda **kw: [*real(**kw), broken] if kw.get("group") == "atzoo" else real(**kw))
    relaxed = invoke("plugins", "--json")
    assert relaxed.exit_code == 0
    assert {p["name"]: p["status"] for p in json.loads(relaxed.output)}["broken"] == "failed"
    strict = invoke("--strict", "plugins")
    assert strict.exit_code == 2
    assert "broken" in strict.output and "atzoo_no_such_module_xyz" in strict.output
    assert "ATZOO_STRICT" not in __import__("os").environ


@pytest.mark.parametrize("args", [["--help"], ["list", "methods"], ["plugins", "--json"],
                                  ["describe", "methods", "baseline"]])
def test_help_list_plugins_and_describe_do_not_import_torch(args):
    code = ("import sys, json\nfrom atzoo.cli.main import main\n"
            f"try:\n    main({args!r})\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print('HEAVY=' + json.dumps([m for m in ('torch', 'timm') if m in sys.modules]))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.splitlines()[-1] == "HEAVY=[]"
