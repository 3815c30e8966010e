"""Model packages: export, strict loading without pickle, the round trip from a trained run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from atzoo.errors import AtzooError, FormatError, PackageError
from atzoo.formats.metrics import results_from_evaluation
from atzoo.hub import load
from atzoo.outputs import OutputError
from atzoo.package import CARD, CONFIG, PACKAGE_FILES, RESULTS, WEIGHTS, export_run, read_package, requirement
from tests.packages import SCENARIO_NAMES, TINY_OVERRIDES, fake_metrics, fake_results, make_package, make_run_dir

def test_export_writes_exactly_the_four_files_with_rebuild_config(tmp_path):
    run = make_run_dir(tmp_path / "run")
    out = export_run(run, tmp_path / "pkg", dataset_release="403k", license="cc-by-nc-4.0")
    assert sorted(p.name for p in out.iterdir()) == sorted([WEIGHTS, CONFIG, RESULTS, CARD])
    config = json.loads((out / CONFIG).read_text())
    assert config["method"] == "builtins:baseline"
    assert config["plugin"]["name"] == "builtins" and config["plugin"]["distribution"] == "atzoo"
    assert config["plugin"]["requires"].startswith("atzoo>=")
    assert config["input_size"] == [32, 16] and config["num_heads"] == 1
    assert config["dataset_release"] == "403k" and config["protocol_version"] == "1.0"
    assert "data_root" not in json.dumps(config)
    assert (out / WEIGHTS).read_bytes() == (run / "model.safetensors").read_bytes()
    card = (out / CARD).read_text()
    assert card.startswith("---\nlicense: cc-by-nc-4.0\n") and "model-index" in card
    assert "AT-USTC (403k release)" in card and "IJCAI" in card and "| AD-LT | 55.00 | 40.00 |" in card
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_results_hold_aggregate_numbers_only(tmp_path):
    from atzoo.formats.metrics import Provenance

    run = make_run_dir(tmp_path / "run")
    provenance = Provenance.model_validate(fake_results(run / "model.safetensors", "403k")["provenance"])
    metrics = fake_metrics()
    metrics["DT-ST"]["ranks"] = [1, 2, 3]
    metrics["per_image"] = {"a.jpg": 1}
    with pytest.raises(AtzooError, match="DT-ST.ranks is not a field"):
        results_from_evaluation(metrics, provenance)
    del metrics["DT-ST"]["ranks"]
    results = results_from_evaluation(metrics, provenance).to_json()
    assert set(results) == {"format_version", "protocol_version", *SCENARIO_NAMES, "mixed", "provenance"}
    with pytest.raises(AtzooError, match="AD-LT is missing"):
        results_from_evaluation({k: v for k, v in fake_metrics().items() if k != "AD-LT"}, provenance)


def test_the_release_is_the_one_recorded_with_the_results(tmp_path):
    synthetic = export_run(make_run_dir(tmp_path / "s", synthetic=True), tmp_path / "s-pkg")
    assert json.loads((synthetic / CONFIG).read_text())["dataset_release"] == "synthetic"
    official = export_run(make_run_dir(tmp_path / "r"), tmp_path / "r-pkg")
    assert json.loads((official / CONFIG).read_text())["dataset_release"] == "403k"
    with pytest.raises(PackageError, match="recognised as release 'synthetic'.*drop --dataset-release"):
        export_run(make_run_dir(tmp_path / "s2", synthetic=True), tmp_path / "s2-pkg", dataset_release="403k")
    assert not (tmp_path / "s2-pkg").exists()


def test_any_at_ustc_format_root_is_packaged_as_a_custom_release_with_its_fingerprint(tmp_path):
    run = make_run_dir(tmp_path / "private", release="custom")
    package = export_run(run, tmp_path / "pkg")
    config = json.loads((package / CONFIG).read_text())
    assert config["dataset_release"] == "custom" and config["dataset_fingerprint"] == "e" * 64
    results = json.loads((package / RESULTS).read_text())
    assert results["provenance"]["dataset"] == {"release": "custom", "fingerprint": "e" * 64, "image_count": 1000}
    assert "a custom AT-USTC-format collection" in (package / CARD).read_text()
    with pytest.raises(PackageError, match="--dataset-release 403k: .* recognised as release 'custom'"):
        export_run(run, tmp_path / "pkg2", dataset_release="403k")


def test_a_135k_release_may_name_a_custom_root_of_about_that_size(tmp_path):
    run = make_run_dir(tmp_path / "old", release="custom")
    data = json.loads((run / "metrics.json").read_text())
    data["provenance"]["dataset"]["image_count"] = 134_000
    (run / "metrics.json").write_text(json.dumps(data))
    package = export_run(run, tmp_path / "pkg", dataset_release="135k")
    assert json.loads((package / CONFIG).read_text())["dataset_release"] == "135k"


def test_export_ships_only_results_measured_on_the_exported_weights(tmp_path):
    run = make_run_dir(tmp_path / "run", synthetic=True)
    other = make_run_dir(tmp_path / "other", synthetic=True, seed=1)
    (run / "metrics.json").write_bytes((other / "metrics.json").read_bytes())
    with pytest.raises(PackageError, match="was measured on weights with sha256 .* evaluate the run again"):
        export_run(run, tmp_path / "pkg")
    legacy = fake_metrics()
    (run / "metrics.json").write_text(json.dumps(legacy))
    with pytest.raises(PackageError, match="(?s)format_version is missing.*evaluate it again"):
        export_run(run, tmp_path / "pkg")
    without_any_time = fake_results(run / "model.safetensors", "synthetic")
    del without_any_time["Any-Time"]
    (run / "metrics.json").write_text(json.dumps(without_any_time))
    with pytest.raises(PackageError, match="Any-Time is missing"):
        export_run(run, tmp_path / "pkg")
    edited = fake_results(run / "model.safetensors", "synthetic")
    edited["DT-ST"]["rank1"] = 0.89
    (run / "metrics.json").write_text(json.dumps(edited))
    with pytest.raises(PackageError, match="not the mean of the six scenarios"):
        export_run(run, tmp_path / "pkg")
    assert not (tmp_path / "pkg").exists()


@pytest.mark.parametrize("release", ["403k", "custom"])
def test_weights_trained_on_at_ustc_default_to_research_only_terms(tmp_path, release):
    run = make_run_dir(tmp_path / "run", release=release)
    card = (export_run(run, tmp_path / "pkg") / CARD).read_text()
    assert card.startswith("---\nlicense: other\nlicense_name: at-ustc-research-only\n")
    assert "research use only" in card and "forbids commercial use" in card and "@inproceedings{li2025anytime" in card
    for open_licence in ("apache-2.0", "mit"):
        with pytest.raises(PackageError, match=f"--license {open_licence}: .*research use only"):
            export_run(run, tmp_path / "pkg2", license=open_licence)
    assert not (tmp_path / "pkg2").exists()
    nc = (export_run(run, tmp_path / "pkg3", license="cc-by-nc-4.0") / CARD).read_text()
    assert nc.startswith("---\nlicense: cc-by-nc-4.0\n")


def test_synthetic_only_weights_may_use_an_open_licence(tmp_path):
    run = make_run_dir(tmp_path / "run", synthetic=True)
    card = (export_run(run, tmp_path / "pkg") / CARD).read_text()
    assert card.startswith("---\nlicense: apache-2.0\n") and "forbids commercial use" not in card
    assert (export_run(run, tmp_path / "pkg2", license="mit") / CARD).read_text().startswith("---\nlicense: mit\n")


def test_export_refuses_a_non_empty_out_dir_unless_overwrite(tmp_path):
    run = make_run_dir(tmp_path / "run", synthetic=True)
    out = tmp_path / "pkg"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="--overwrite"):
        export_run(run, out)
    with pytest.raises(OutputError, match="keep.txt"):
        export_run(run, out, overwrite=True)
    assert (out / "keep.txt").read_text() == "mine"
    (out / "keep.txt").unlink()
    export_run(run, out)
    export_run(make_run_dir(tmp_path / "run2", synthetic=True, seed=1), out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == sorted(PACKAGE_FILES)


def test_export_of_a_damaged_run_leaves_the_old_package_untouched(tmp_path):
    pkg = make_package(tmp_path)
    before = {p.name: p.read_bytes() for p in pkg.iterdir()}
    run = make_run_dir(tmp_path / "bad", synthetic=True)
    (run / "model.safetensors").write_bytes((run / "model.safetensors").read_bytes()[:100])
    with pytest.raises(PackageError, match="damaged or truncated"):
        export_run(run, pkg, overwrite=True)
    assert {p.name: p.read_bytes() for p in pkg.iterdir()} == before


def test_load_rebuilds_the_model_with_identical_outputs(tmp_path):
    run = make_run_dir(tmp_path / "run", synthetic=True, seed=3)
    pkg = export_run(run, tmp_path / "pkg")
    from atzoo.registry import load_registry
    from atzoo.runner.evaluation import load_run_model
    from atzoo.runner.rundir import open_run_dir

    original, _ = load_run_model(open_run_dir(run), load_registry(), torch.device("cpu"))
    loaded = load(pkg)
    assert not loaded.training and loaded.atzoo_config["method"] == "builtins:baseline"
    images = torch.randn(3, 3, 32, 16)
    with torch.no_grad():
        assert torch.equal(original(images), loaded(images))
    assert torch.equal(load(pkg / WEIGHTS)(images), loaded(images))


def test_missing_or_unexpected_keys_are_refused(tmp_path):
    pkg = make_package(tmp_path)
    from safetensors.torch import load_file

    tensors = load_file(str(pkg / WEIGHTS))
    missing = dict(tensors)
    missing.pop(sorted(missing)[0])
    save_file(missing, str(pkg / WEIGHTS))
    with pytest.raises(PackageError, match="missing or unexpected keys"):
        load(pkg)
    save_file({**tensors, "extra.weight": torch.zeros(2)}, str(pkg / WEIGHTS))
    with pytest.raises(PackageError, match="extra.weight"):
        load(pkg)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupted_weights_are_a_clear_error(tmp_path, damage):
    pkg = make_package(tmp_path)
    data = (pkg / WEIGHTS).read_bytes()
    (pkg / WEIGHTS).write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00" * 64)
    with pytest.raises(PackageError, match="damaged or truncated"):
        load(pkg)


@pytest.mark.parametrize("suffix", [".bin", ".pt", ".pth"])
def test_pickles_are_never_loaded(tmp_path, suffix):
    folder = tmp_path / "pickled"
    folder.mkdir()
    weights = folder / f"pytorch_model{suffix}"
    torch.save({"w": torch.zeros(1)}, weights)
    for target in (folder, weights):
        with pytest.raises(PackageError, match="never unpickles"):
            load(target)


def test_unknown_method_and_missing_plugin_name_the_fix(tmp_path):
    pkg = make_package(tmp_path)
    config = json.loads((pkg / CONFIG).read_text())
    config["method"] = config["recipe"]["method"]["qualified_name"] = "builtins:no-such-method"
    (pkg / CONFIG).write_text(json.dumps(config))
    with pytest.raises(PackageError, match="no-such-method"):
        load(pkg)
    config["method"] = "fancy:fancy-net"
    config["recipe"]["method"] = {"qualified_name": "fancy:fancy-net", "plugin": "fancy",
                                  "distribution": "atzoo-fancy", "version": "1.2.0"}
    config["plugin"] = {"name": "fancy", "distribution": "atzoo-fancy", "version": "1.2.0",
                        "requires": "atzoo-fancy>=1.2.0,<2"}
    (pkg / CONFIG).write_text(json.dumps(config))
    with pytest.raises(PackageError, match=r'pip install "atzoo-fancy>=1.2.0,<2"'):
        load(pkg)


def test_read_package_rejects_non_packages(tmp_path):
    with pytest.raises(PackageError, match="not a Hub id"):
        load(tmp_path / "missing-folder")
    with pytest.raises(PackageError, match="no such model package"):
        read_package(tmp_path / "nothing")
    pkg = make_package(tmp_path)
    (pkg / CONFIG).write_text("{not json")
    with pytest.raises(FormatError, match="not valid JSON"):
        read_package(pkg)
    (pkg / CONFIG).write_text(json.dumps({"format": "other"}))
    with pytest.raises(FormatError, match="atzoo-model-2"):
        read_package(pkg)


def test_requirement_ranges():
    assert requirement("atzoo-uniat", "1.4.2") == "atzoo-uniat>=1.4.2,<2"
    assert requirement("atzoo", "0.1.0") == "atzoo>=0.1.0,<0.2"
    assert requirement("atzoo-x", "") == "atzoo-x"
    assert requirement("", "1.0") == ""


def test_export_cli_errors_exit_2(tmp_path):
    from atzoo.cli.main import cli

    run = make_run_dir(tmp_path / "run")
    result = CliRunner().invoke(cli, ["export", str(run), str(tmp_path / "pkg"), "--dataset-release", "135k"])
    assert result.exit_code == 2 and "--dataset-release 135k" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["export", str(run), str(tmp_path / "pkg"), "--license", "apache-2.0"])
    assert result.exit_code == 2 and "research use only" in result.output
    assert not (tmp_path / "pkg").exists()
    result = CliRunner().invoke(cli, ["export", str(run), str(tmp_path / "pkg")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "pkg" / CONFIG).read_text())["dataset_release"] == "403k"


@pytest.fixture(scope="module")
def trained_package(tiny_synth_root, tmp_path_factory):
    from atzoo.runner import train

    base = tmp_path_factory.mktemp("roundtrip")
    run = train("baseline", tiny_synth_root, base / "run", dict(TINY_OVERRIDES), progress=False)
    return Path(run.path), export_run(run.path, base / "pkg")


def test_round_trip_from_a_trained_run_gives_identical_embeddings_and_results(trained_package, tiny_synth_root):
    from atzoo.data import parse_root
    from atzoo.registry import load_registry
    from atzoo.runner import distributed
    from atzoo.runner.evaluation import evaluate_model, extract_features, load_run_model, protocol_test_records
    from atzoo.runner.recipe import ResolvedRecipe
    from atzoo.runner.rundir import open_run_dir

    run, pkg = trained_package
    context = distributed.Context(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    original, recipe = load_run_model(open_run_dir(run), load_registry(), torch.device("cpu"))
    loaded = load(pkg)
    records = parse_root(tiny_synth_root)
    test = protocol_test_records(records)
    packaged_recipe = ResolvedRecipe.from_json(loaded.atzoo_config["recipe"])
    a = extract_features(original, test, recipe, context, progress=False)
    b = extract_features(loaded, test, packaged_recipe, context, progress=False)
    assert torch.equal(a, b)
    assert evaluate_model(loaded, records, packaged_recipe, context, progress=False) == \
        evaluate_model(original, records, recipe, context, progress=False)
    results = json.loads((pkg / RESULTS).read_text())
    saved = json.loads((run / "metrics.json").read_text())
    assert results["AD-LT"]["mAP"] == saved["AD-LT"]["mAP"]


def test_embed_matches_the_runner_features_and_is_evaluable(trained_package, tiny_synth_root, tmp_path):
    from atzoo.embed import embed
    from atzoo.evaluation.features_file import load_features

    _, pkg = trained_package
    person_dir = sorted(p for p in Path(tiny_synth_root).iterdir() if p.is_dir())[0]
    out = embed(pkg, [person_dir], tmp_path / "feats.npz", batch_size=5, progress=False)
    assert out.labelled and out.count == len(list(person_dir.glob("*.jpg")) + list(person_dir.glob("*.png")))
    features = load_features(out.path)
    images = sorted(Path(p) for p in features.paths)
    assert features.pid[0] == int(person_dir.name[1:4]) and set(features.camera) <= set(range(1, 17))
    model = load(pkg)
    from atzoo.embed import embed_images

    again = embed_images(model, images[:3], (32, 16), model.atzoo_config["normalization"], batch_size=2,
                         progress=False)
    stored = features.feats[:3] if features.feats.ndim == 2 else features.feats[:3, 0]
    np.testing.assert_allclose(again, stored, rtol=1e-5, atol=1e-6)  # other batch size: BLAS rounding only


def test_embed_of_arbitrary_images_stores_paths_and_minus_one_labels(trained_package, tiny_synth_root, tmp_path):
    from atzoo.cli.main import cli

    _, pkg = trained_package
    source = next(Path(tiny_synth_root).rglob("cam*.*"))
    mine = tmp_path / "photos"
    mine.mkdir()
    shutil.copy(source, mine / f"holiday{source.suffix}")
    out = tmp_path / "mine.npz"
    result = CliRunner().invoke(cli, ["embed", str(pkg), str(mine), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "cannot evaluate" in result.output
    with np.load(out, allow_pickle=False) as archive:
        assert archive["feats"].shape[0] == 1 and archive["pid"].tolist() == [-1]
        assert archive["paths"].tolist() == [str(mine / f"holiday{source.suffix}")]
    result = CliRunner().invoke(cli, ["embed", str(pkg), str(tmp_path / "nope"), "--out", str(out)])
    assert result.exit_code == 2 and "no such image or folder" in result.output


def test_atzoo_exposes_load_and_create_model():
    import atzoo

    assert atzoo.load is load
    from atzoo.zoo import create_model

    assert atzoo.create_model is create_model
    with pytest.raises(AtzooError):
        atzoo.create_model("no-such-method")


def test_embedding_a_whole_root_evaluates_like_the_runner(trained_package, tiny_synth_root, tmp_path):
    from atzoo.data import parse_root
    from atzoo.embed import embed
    from atzoo.evaluation.features_file import load_features
    from atzoo.runner import distributed
    from atzoo.runner.evaluation import evaluate_model
    from atzoo.runner.recipe import ResolvedRecipe

    _, pkg = trained_package
    out = embed(pkg, [tiny_synth_root], tmp_path / "all.npz", batch_size=64, progress=False)
    from_file = load_features(out.path).evaluate(mixed=False)
    model = load(pkg)
    context = distributed.Context(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    direct = evaluate_model(model, parse_root(tiny_synth_root), ResolvedRecipe.from_json(model.atzoo_config["recipe"]),
                            context, progress=False)
    for name in SCENARIO_NAMES:
        assert from_file[name]["mAP"] == pytest.approx(direct[name]["mAP"], abs=1e-4)


def test_embed_takes_a_run_folder_and_gives_the_packages_features(trained_package, tiny_synth_root, tmp_path):
    from atzoo.embed import embed

    run, pkg = trained_package
    person_dir = sorted(p for p in Path(tiny_synth_root).iterdir() if p.is_dir())[0]
    from_run = embed(run, [person_dir], tmp_path / "run.npz", progress=False)
    from_package = embed(pkg, [person_dir], tmp_path / "pkg.npz", progress=False)
    assert from_run.labelled and from_run.count == from_package.count
    with np.load(from_run.path) as a, np.load(from_package.path) as b:
        np.testing.assert_array_equal(a["feats"], b["feats"])
        np.testing.assert_array_equal(a["pid"], b["pid"])


def test_loading_a_run_folder_as_a_package_says_to_export_it(trained_package):
    run, _ = trained_package
    with pytest.raises(PackageError, match=r"is a run directory .*atzoo export"):
        load(run)


def test_one_image_off_the_pattern_keeps_the_others_labels_and_is_named(trained_package, tiny_synth_root, tmp_path):
    from atzoo.cli.main import cli

    _, pkg = trained_package
    person_dir = sorted(p for p in Path(tiny_synth_root).iterdir() if p.is_dir())[0]
    mixed = tmp_path / "mixed" / person_dir.name
    shutil.copytree(person_dir, mixed)
    odd = next(mixed.glob("cam*.*"))
    odd.rename(mixed / f"holiday{odd.suffix}")
    out = tmp_path / "mixed.npz"
    result = CliRunner().invoke(cli, ["embed", str(pkg), str(mixed), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert f"1 of {len(list(mixed.iterdir()))} images do not follow the AT-USTC names" in result.output
    assert f"holiday{odd.suffix}" in result.output and "keep the labels" in result.output
    with np.load(out, allow_pickle=False) as archive:
        paths = archive["paths"].tolist()
        row = paths.index(str(mixed / f"holiday{odd.suffix}"))
        assert archive["pid"][row] == -1 and archive["flag"][row] == -1
        others = np.delete(archive["pid"], row)
        assert (others == int(person_dir.name[1:4])).all()
        assert (np.delete(archive["camera"], row) >= 1).all()
