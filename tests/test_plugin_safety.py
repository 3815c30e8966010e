"""Plugins cannot break each other, and strict mode catches every author mistake.

Every plugin here is really installed: a module and a dist-info folder with an entry point, on a
folder on the path, found by `importlib.metadata` like any pip-installed distribution."""

from __future__ import annotations

import json
import sys

import pytest

import atzoo.registry as registry_module
from atzoo.registry import load_registry
from tests.plugin_dists import atzoo, install

TINY = ["--set", "epochs=1", "--set", "iters_per_epoch=1", "--set", "image_size=[32,16]", "--set", "num_workers=0",
        "--set", "num_persons=4", "--set", "num_instances=2", "--set", "cache=false", "--set", "eval_batch_size=64"]


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch):
    monkeypatch.delenv("ATZOO_STRICT", raising=False)
    monkeypatch.delenv("ATZOO_PLUGINS", raising=False)
    monkeypatch.setattr(registry_module, "_CACHE", {})


def plugins_json(site):
    done = atzoo(site, "plugins", "--json")
    assert done.returncode == 0, done.stderr
    return {info["name"] + "@" + info["distribution"]: info for info in json.loads(done.stdout)}


# 1. name takeover ---------------------------------------------------------------------------


@pytest.mark.parametrize("claimed", ["builtins", "atzoo"])
def test_a_stranger_claiming_a_reserved_name_cannot_hide_the_builtins(tmp_path, claimed):
    marker = tmp_path / "stranger-ran"
    site = install(tmp_path / "site", "stranger-dist", claimed, "stranger_plugin", f"""
        open({str(marker)!r}, "w").close()

        @hookimpl
        def atzoo_register_methods(register):
            register(Method(name="baseline", backbone="tiny_cnn", losses=(LossTerm("cross_entropy"),)))
        """)
    methods = atzoo(site, "list", "methods", "--json")
    assert methods.returncode == 0, methods.stderr
    baseline = [m for m in json.loads(methods.stdout) if m["name"] == "baseline"]
    assert [(m["plugin"], m["distribution"]) for m in baseline] == [("builtins", "atzoo")]
    refused = plugins_json(site)[f"{claimed}@stranger-dist"]
    assert refused["status"] == "failed"
    assert refused["error"] == (f"plugin name {claimed!r} is reserved for atzoo's built-ins; distribution "
                                f"stranger-dist may not claim it: rename its entry point")
    strict = atzoo(site, "--strict", "list", "methods")
    assert strict.returncode == 2 and "stranger-dist" in strict.stderr and "reserved" in strict.stderr
    assert "Traceback" not in strict.stderr
    assert not marker.exists(), "the stranger's module was imported"


def test_a_plugin_name_is_owned_by_its_first_distribution(tmp_path, monkeypatch):
    """An impostor later on the path cannot take `bot` from atzoo-bot, and is named with the owner."""
    marker = tmp_path / "impostor-ran"
    site = install(tmp_path / "site", "impostor", "bot", "impostor_bot", f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.setattr(sys, "path", [*sys.path, str(site)])
    registry = load_registry(refresh=True)
    assert registry.get("methods", "bot:bot").distribution == "atzoo-bot"
    (refused,) = [p for p in registry.plugins if p.distribution == "impostor"]
    assert refused.status == "failed"
    assert refused.error == ("plugin name 'bot' is already owned by distribution atzoo-bot; distribution impostor "
                             "may not provide a second plugin of that name: rename its entry point")
    assert not marker.exists()


def test_of_two_new_distributions_the_first_on_the_path_owns_the_name(tmp_path):
    first = install(tmp_path / "first", "first-dist", "shared", "shared_first", "")
    second = install(tmp_path / "second", "second-dist", "shared", "shared_second", "")
    done = atzoo([first, second], "plugins", "--json")
    listed = {(p["name"], p["distribution"]): p for p in json.loads(done.stdout)}
    assert listed[("shared", "first-dist")]["status"] == "ok"
    assert "already owned by distribution first-dist; distribution second-dist" in \
        listed[("shared", "second-dist")]["error"]


# 2. a plugin's `baseline` ------------------------------------------------------------------


def test_a_plugin_baseline_is_ambiguous_by_short_name_but_quickstart_runs_the_builtin(tmp_path, tiny_synth_root):
    marker = tmp_path / "their-factory-ran"
    site = install(tmp_path / "site", "other-dist", "other", "other_plugin", f"""
        def build(embed_dim=16):
            open({str(marker)!r}, "w").close()
            raise RuntimeError("not this one")

        @hookimpl
        def atzoo_register_backbones(register):
            register(Backbone(name="their-net", factory=build, embed_dim=16))

        @hookimpl
        def atzoo_register_methods(register):
            register(Method(name="baseline", backbone="other:their-net", losses=(LossTerm("builtins:cross_entropy"),)))
        """)
    described = atzoo(site, "describe", "methods", "baseline")
    assert described.returncode == 2
    assert ("method name 'baseline' is ambiguous: registered as builtins:baseline and other:baseline"
            in described.stderr)
    out = tmp_path / "quick"
    done = atzoo(site, "quickstart", "--data", str(tiny_synth_root), "--out", str(out), *TINY, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((out / "config.json").read_text())["recipe"]["method"]["qualified_name"] == "builtins:baseline"
    assert not marker.exists()


# 3. a hook that returns its items ----------------------------------------------------------


def test_a_hook_returning_its_items_fails_the_plugin_and_strict_mode(tmp_path):
    site = install(tmp_path / "site", "returner-dist", "returner", "returner_plugin", """
        def build():
            return None

        @hookimpl
        def atzoo_register_backbones(register):
            return [Backbone(name="returned", factory=build, embed_dim=8)]
        """)
    info = plugins_json(site)["returner@returner-dist"]
    assert info["status"] == "failed"
    assert info["error"].startswith("atzoo_register_backbones returned [Backbone(name='returned'")
    assert "instead of calling register(item) for each item" in info["error"]
    strict = atzoo(site, "--strict", "plugins")
    assert strict.returncode == 2
    assert "returner (returner-dist): atzoo_register_backbones returned" in strict.stderr


# 4. check_plugin tests its plugin alone ------------------------------------------------------

MINE = """
    def build_net(embed_dim=16):
        from atzoo.backbones import tiny_cnn
        return tiny_cnn(embed_dim=embed_dim, width=8)

    def build_loss(context, epsilon=0.1):
        from atzoo.losses import cross_entropy
        return cross_entropy(context, epsilon=epsilon)

    @hookimpl
    def atzoo_register_backbones(register):
        register(Backbone(name="mine-net", factory=build_net, embed_dim=16, defaults={"embed_dim": 16},
                          input_size=(32, 16)))

    @hookimpl
    def atzoo_register_losses(register):
        register(Loss(name="shared-loss", factory=build_loss, consumes=("logits", "target")))

    @hookimpl
    def atzoo_register_methods(register):
        register(Method(name="mine", backbone="mine-net", losses=(LossTerm("shared-loss"),),
                        train={"epochs": 1, "image_size": [32, 16]}))
    """


def test_check_plugin_tests_its_plugin_alone_whatever_else_is_installed(tmp_path):
    site = install(tmp_path / "site", "mine-dist", "mine", "mine_plugin", MINE)
    install(site, "broken-dist", "broken", "broken_plugin", "raise ImportError('a missing dependency')\n")
    install(site, "rival-dist", "rival", "rival_plugin", MINE.replace("mine", "rival"))
    strict = atzoo(site, "--strict", "plugins")
    assert strict.returncode == 2
    assert "broken (broken-dist): ImportError: a missing dependency" in strict.stderr
    assert "loss name 'shared-loss' is ambiguous" in strict.stderr
    checked = atzoo(site, "check-plugin", "mine", "--build")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "ok       method mine:mine" in checked.stdout and "all checks passed" in checked.stdout
    api = atzoo(site, "check-plugin", "mine", "--json")
    report = json.loads(api.stdout)
    assert report["problems"] == [] and [m["name"] for m in report["methods"]] == ["mine:mine"]
    assert isinstance(report["import_seconds"], float)


def test_check_plugin_reports_every_problem_at_once(tmp_path, monkeypatch):
    site = install(tmp_path / "site", "sloppy-dist", "sloppy", "sloppy_plugin", """
        def build(embed_dim=16):
            import torch
            return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(embed_dim))

        @hookimpl
        def atzoo_register_backbones(register):
            register(Backbone(name="net", factory=build, embed_dim=32))

        @hookimpl
        def atzoo_register_methods(register):
            register(Method(name="a", backbone="no-such-net", losses=(LossTerm("builtins:cross_entropy"),)))
            register(Method(name="b", backbone="sloppy:net", losses=(LossTerm("no-such-loss"),),
                            train={"lr": 0.1}))
        """)
    done = atzoo(site, "check-plugin", "sloppy")
    assert done.returncode == 2
    problems = [line for line in done.stderr.splitlines() if line.startswith("problem")]
    assert any("method sloppy:a: backbone: unknown backbone 'no-such-net'" in p for p in problems)
    assert any("method sloppy:b: losses[0].loss: unknown loss 'no-such-loss'" in p for p in problems)
    assert any("backbone sloppy:net: train-mode output (2, 16); expected (2, 32)" in p for p in problems)
    assert "plugin sloppy: 3 problem(s)" in done.stderr

    monkeypatch.setattr(sys, "path", [str(site), *sys.path])
    from atzoo.testing import check_plugin

    with pytest.raises(AssertionError) as raised:
        check_plugin("sloppy")
    assert "no-such-net" in str(raised.value) and "no-such-loss" in str(raised.value)


# 5. load errors show their cause --------------------------------------------------------------


def test_a_failing_import_shows_its_traceback_on_request(tmp_path):
    site = install(tmp_path / "site", "crashy-dist", "crashy", "crashy_plugin", """
        def _probe_driver():
            raise RuntimeError("no GPU driver here")

        _probe_driver()
        """)
    brief = atzoo(site, "plugins")
    assert brief.returncode == 0
    assert "plugin crashy (crashy-dist) failed: RuntimeError: no GPU driver here" in brief.stderr
    assert "atzoo plugins --verbose" in brief.stderr and "Traceback" not in brief.stderr
    verbose = atzoo(site, "plugins", "--verbose")
    assert "Traceback (most recent call last)" in verbose.stderr
    assert "crashy_plugin.py" in verbose.stderr and "_probe_driver" in verbose.stderr


def test_errors_about_an_item_name_the_item(tmp_path):
    site = install(tmp_path / "site", "heads-dist", "heads", "heads_plugin", """
        @hookimpl
        def atzoo_register_methods(register):
            register(Method(name="fine", backbone="tiny_cnn", losses=(LossTerm("cross_entropy"),)))
            register(Method(name="faces", backbone="tiny_cnn", losses=(LossTerm("cross_entropy"),), heads=("face",)))
        """)
    info = plugins_json(site)["heads@heads-dist"]
    assert info["error"] == ("method 'faces': heads ['face'] unknown; each head predicts one of "
                             "['person', 'clothes']")


# 6. strict mode catches every mistake; nothing is written -------------------------------------

MISTAKES = [
    ("typo-hook", """
        @hookimpl
        def atzoo_register_backbone(register):
            pass
        """, "unknown hook 'atzoo_register_backbone'"),
    ("twice", """
        def build(context):
            return None

        @hookimpl
        def atzoo_register_losses(register):
            register(Loss(name="dup", factory=build, consumes=("logits", "target")))
            register(Loss(name="dup", factory=build, consumes=("logits", "target")))
        """, "registers loss 'dup' twice"),
    ("unknown-setting", """
        @hookimpl
        def atzoo_register_methods(register):
            register(Method(name="m", backbone="tiny_cnn", losses=(LossTerm("cross_entropy"),), train={"lr_rate": 0.1}))
        """, "method 'm': train: unknown training setting(s) lr_rate"),
    ("out-of-range", """
        @hookimpl
        def atzoo_register_methods(register):
            register(Method(name="m", backbone="tiny_cnn", losses=(LossTerm("cross_entropy"),),
                            train={"image_size": [100000, 100000]}))
        """, "image_size.0=100000: Input should be less than or equal to 1024 (allowed: >= 16 and <= 1024)"),
    ("missing-backbone", """
        @hookimpl
        def atzoo_register_methods(register):
            register(Method(name="m", backbone="resnet5o", losses=(LossTerm("cross_entropy"),)))
        """, "method missing-backbone:m: backbone: unknown backbone 'resnet5o'"),
    ("ambiguous-backbone", """
        def build(embed_dim=8):
            return None

        @hookimpl
        def atzoo_register_backbones(register):
            register(Backbone(name="tiny_cnn", factory=build, embed_dim=8, defaults={"embed_dim": 8}))

        @hookimpl
        def atzoo_register_methods(register):
            register(Method(name="m", backbone="tiny_cnn", losses=(LossTerm("cross_entropy"),)))
        """, "method ambiguous-backbone:m: backbone: backbone name 'tiny_cnn' is ambiguous: registered as "
             "ambiguous-backbone:tiny_cnn and builtins:tiny_cnn"),
    ("missing-loss", """
        @hookimpl
        def atzoo_register_methods(register):
            register(Method(name="m", backbone="tiny_cnn", losses=(LossTerm("builtins:cross_entropie"),)))
        """, "method missing-loss:m: losses[0].loss: unknown loss 'builtins:cross_entropie'"),
    ("task-family", """
        @hookimpl
        def atzoo_register_methods(register):
            register(Method(name="m", backbone="tiny_cnn", losses=(LossTerm("cross_entropy"),),
                            task_family="bag-of-tricks"))
        """, "method 'm': task_family 'bag-of-tricks' is not one of ['Tr-ReID', 'CC-ReID', 'CM-ReID', 'AT-ReID', "
             "'other']"),
    ("negative-weight", """
        @hookimpl
        def atzoo_register_methods(register):
            register(Method(name="m", backbone="tiny_cnn", losses=(LossTerm("cross_entropy", weight=-1.0),)))
        """, "method 'm': losses[0].weight must be a finite number >= 0, got -1.0"),
    ("text-weight", """
        @hookimpl
        def atzoo_register_methods(register):
            register(Method(name="m", backbone="tiny_cnn", losses=(LossTerm("cross_entropy", weight="1"),)))
        """, "method 'm': losses[0].weight must be a finite number >= 0, got '1'"),
    ("unknown-default", """
        def build(embed_dim=8):
            return None

        @hookimpl
        def atzoo_register_backbones(register):
            register(Backbone(name="net", factory=build, embed_dim=8, defaults={"embed_dim": 8, "widht": 4}))
        """, "backbone 'net': defaults ['embed_dim', 'widht'] are not all accepted by its factory"),
    ("unknown-backbone-arg", """
        @hookimpl
        def atzoo_register_methods(register):
            register(Method(name="m", backbone="tiny_cnn", losses=(LossTerm("cross_entropy"),),
                            backbone_args={"widht": 4}))
        """, "method unknown-backbone-arg:m: backbone_args ['widht']: not accepted by backbone builtins:tiny_cnn"),
]


@pytest.mark.parametrize("name, source, message", MISTAKES, ids=[case[0] for case in MISTAKES])
def test_strict_mode_refuses_each_author_mistake_and_writes_nothing(tmp_path, tiny_synth_root, name, source,
                                                                     message):
    module = name.replace("-", "_") + "_plugin"
    site = install(tmp_path / "site", f"{name}-dist", name, module, source)
    strict = atzoo(site, "--strict", "plugins")
    assert strict.returncode == 2, strict.stdout
    assert f"{name} ({name}-dist): " in strict.stderr and message in strict.stderr, strict.stderr
    assert "Traceback" not in strict.stderr
    out = tmp_path / "run"
    train = atzoo(site, "--strict", "train", "builtins:baseline", "--data", str(tiny_synth_root), "--out", str(out),
                  *TINY)
    assert train.returncode == 2 and message in train.stderr
    assert not out.exists()


# 8. a plugin that makes every command slow -----------------------------------------------------


def test_check_plugin_warns_about_a_slow_import_and_names_the_heavy_module(tmp_path):
    site = install(tmp_path / "site", "heavy-dist", "heavy", "heavy_plugin", "import torch  # noqa: F401\n")
    install(site, "light-dist", "light", "light_plugin", "")
    heavy = atzoo(site, "check-plugin", "heavy")
    assert heavy.returncode == 0, heavy.stderr
    (warning,) = [line for line in heavy.stderr.splitlines() if line.startswith("warning")]
    assert "importing heavy_plugin takes" in warning and "mostly torch (" in warning
    assert "import heavy modules inside the factories" in warning
    light = atzoo(site, "check-plugin", "light")
    assert light.returncode == 0 and "warning" not in light.stderr
