"""The zoo: PretrainedWeights registered by a plugin, create_model tags, `atzoo zoo list`.

The registered weights point at a package exported locally and laid out in a fake offline Hub
cache (see tests/test_hub.py), so `create_model(..., pretrained=TAG)` runs the real download path.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner

from atzoo.errors import AtzooError, HubError, PackageError
from atzoo.hub import load, sha256_file
from atzoo.package import WEIGHTS
from atzoo.plugin import PretrainedWeights, hookimpl
from atzoo.registry import load_registry
from atzoo.zoo import create_model, list_pretrained, pretrained_tags
from tests.packages import fake_metrics, make_package, populate_hf_cache


def weights_plugin(*items: PretrainedWeights) -> SimpleNamespace:
    @hookimpl
    def atzoo_register_weights(register):
        for item in items:
            register(item)

    return SimpleNamespace(atzoo_register_weights=atzoo_register_weights)


@pytest.fixture()
def zoo(tmp_path, monkeypatch):
    """Two tags of the baseline, both served from the offline cache; the registry knows them."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    packages = {}
    items = []
    for tag, seed in (("synth-a", 1), ("synth-b", 2)):
        package = make_package(tmp_path, name=tag, seed=seed)
        commit = populate_hf_cache(cache, f"org/baseline-{tag}", package, revision="v1")
        packages[tag] = package
        items.append(PretrainedWeights(method="baseline", tag=tag, repo_id=f"org/baseline-{tag}", revision=commit,
                                       sha256=sha256_file(package / WEIGHTS), metrics=fake_metrics(0.6),
                                       license="apache-2.0", dataset_release="synthetic"))
    registry = load_registry(extra_plugins={"testzoo": weights_plugin(*items)}, refresh=True)
    monkeypatch.setattr("atzoo.registry.load_registry", lambda **kwargs: registry)
    return SimpleNamespace(registry=registry, packages=packages, items=items)


def test_create_model_with_a_tag_loads_the_registered_weights(zoo):
    images = torch.randn(2, 3, 32, 16)
    model = create_model("baseline", pretrained="synth-b")
    with torch.no_grad():
        assert torch.equal(model(images), load(zoo.packages["synth-b"])(images))
        assert not torch.equal(model(images), load(zoo.packages["synth-a"])(images))


def test_a_wrong_tag_lists_the_valid_ones(zoo):
    with pytest.raises(AtzooError, match="valid tags: synth-a, synth-b, synthetic-demo"):
        create_model("baseline", pretrained="synth-c")
    with pytest.raises(AtzooError, match="choose one"):
        create_model("baseline", pretrained=True)


def test_pretrained_true_takes_the_only_tag(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    package = make_package(tmp_path, seed=5)
    commit = populate_hf_cache(tmp_path / "cache", "org/only", package)
    item = PretrainedWeights(method="builtins:baseline", tag="only", repo_id="org/only", revision=commit,
                             sha256=sha256_file(package / WEIGHTS))
    registry = load_registry(extra_plugins={"one": weights_plugin(item)}, refresh=True)
    assert list(pretrained_tags("baseline", registry)) == ["only"]
    model = create_model("baseline", pretrained=True, registry=registry)
    images = torch.randn(1, 3, 32, 16)
    with torch.no_grad():
        assert torch.equal(model(images), load(package)(images))


def test_a_method_without_weights_says_so():
    from atzoo.plugin import LossTerm, Method

    @hookimpl
    def atzoo_register_methods(register):
        register(Method(name="bare-net", backbone="tiny_cnn", losses=(LossTerm("cross_entropy"),)))

    registry = load_registry(extra_plugins={"bare": SimpleNamespace(atzoo_register_methods=atzoo_register_methods)},
                             refresh=True)
    with pytest.raises(AtzooError, match="no registered pretrained weights"):
        create_model("bare-net", pretrained="anything", registry=registry)
    with pytest.raises(AtzooError, match="unknown pretrained tag 'anything'.*valid tags: synthetic-demo"):
        create_model("baseline", pretrained="anything", registry=registry)


def test_a_registered_sha256_that_does_not_match_is_refused(zoo, tmp_path):
    good = zoo.items[0]
    bad = PretrainedWeights(method="baseline", tag="tampered", repo_id=good.repo_id, revision=good.revision,
                            sha256="0" * 64)
    registry = load_registry(extra_plugins={"bad": weights_plugin(bad)}, refresh=True)
    with pytest.raises(HubError, match="sha256 mismatch"):
        create_model("baseline", pretrained="tampered", registry=registry)


def test_weights_of_another_method_are_refused(zoo, tmp_path):
    from atzoo.plugin import LossTerm, Method

    item = PretrainedWeights(method="other-net", tag="x", repo_id=zoo.items[0].repo_id,
                             revision=zoo.items[0].revision, sha256=zoo.items[0].sha256)

    @hookimpl
    def atzoo_register_methods(register):
        register(Method(name="other-net", backbone="resnet18", losses=(LossTerm("cross_entropy"),)))

    plugin = SimpleNamespace(atzoo_register_methods=atzoo_register_methods,
                             atzoo_register_weights=weights_plugin(item).atzoo_register_weights)
    registry = load_registry(extra_plugins={"other": plugin}, refresh=True)
    with pytest.raises(PackageError, match="are for method builtins:baseline"):
        create_model("other-net", pretrained="x", registry=registry)


def test_create_model_without_weights_builds_a_fresh_model():
    model = create_model("baseline", registry=load_registry(), overrides={"image_size": [32, 16]})
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 16)).shape == (2, 128)


def test_list_pretrained_rows(zoo):
    rows = {row["name"]: row for row in list_pretrained()}
    assert set(rows) == {"baseline-synthetic-demo", "baseline.synth-a", "baseline.synth-b"}
    assert rows["baseline-synthetic-demo"]["dataset_release"] == "synthetic"
    assert rows["baseline-synthetic-demo"]["source"] == "shipped" and rows["baseline.synth-a"]["source"] == "hub"
    row = rows["baseline.synth-a"]
    assert row["repo_id"] == "org/baseline-synth-a" and row["sha256"] == zoo.items[0].sha256
    assert set(row["metrics"]) == {"DT-ST", "DT-LT", "NT-ST", "NT-LT", "AD-ST", "AD-LT", "Any-Time"}


def test_zoo_list_cli(zoo):
    from atzoo.cli.main import cli

    result = CliRunner().invoke(cli, ["zoo", "list", "--json"])
    assert result.exit_code == 0, result.output
    assert [row["tag"] for row in json.loads(result.output)] == ["synthetic-demo", "synth-a", "synth-b"]
    result = CliRunner().invoke(cli, ["zoo", "list"])
    assert result.exit_code == 0, result.output
    assert "baseline@synth-b" in result.output and "60.0/50.0" in result.output
    assert "trained on synthetic data only, not an AT-USTC result" in result.output


def test_pull_uses_the_zoo_entry_for_revision_and_checksum(zoo):
    from atzoo.hub import pull

    result = pull("org/baseline-synth-a")
    assert result.revision == zoo.items[0].revision
    assert result.verified_against == "the zoo entry baseline.synth-a"


# ---------------------------------------------------------------------------------------------
# the package shipped with atzoo


def test_the_shipped_demo_package_loads_without_any_download(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from atzoo.zoo import SYNTHETIC_DEMO, demo_package_path

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    model = create_model("baseline", pretrained="synthetic-demo", registry=load_registry())
    images = torch.randn(2, 3, 128, 64)
    with torch.no_grad():
        assert torch.equal(model(images), load(demo_package_path())(images))
    assert model.atzoo_config["dataset_release"] == "synthetic"
    assert sha256_file(SYNTHETIC_DEMO.path / WEIGHTS) == SYNTHETIC_DEMO.sha256
    assert not (tmp_path / "empty-cache").exists()


def test_pretrained_true_falls_back_to_the_shipped_package_when_nothing_is_registered():
    model = create_model("baseline", pretrained=True, registry=load_registry(refresh=True))
    assert model.atzoo_config["dataset_release"] == "synthetic"


def test_the_shipped_package_is_small_safetensors_and_labelled_synthetic():
    from atzoo.io import read_json
    from atzoo.zoo import SHIPPED

    for package in SHIPPED:
        files = sorted(p.name for p in package.path.iterdir())
        assert files == ["README.md", "config.json", "model.safetensors", "results.json"]
        assert sum(p.stat().st_size for p in package.path.iterdir()) <= 2 * 1024 * 1024
        assert read_json(package.path / "config.json")["dataset_release"] == "synthetic"
        assert "synthetic" in package.description and "not an AT-USTC result" in package.description


def test_a_tampered_shipped_package_is_refused(tmp_path, monkeypatch):
    import shutil

    import atzoo.zoo as zoo_module

    copy = tmp_path / "zoo_packages"
    shutil.copytree(zoo_module.SHIPPED_DIR, copy)
    weights = copy / zoo_module.SYNTHETIC_DEMO.folder / WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    monkeypatch.setattr(zoo_module, "SHIPPED_DIR", copy)
    with pytest.raises(PackageError, match="not the shipped .*reinstall atzoo"):
        create_model("baseline", pretrained="synthetic-demo", registry=load_registry())
