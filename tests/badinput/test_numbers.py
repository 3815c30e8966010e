"""Non-finite and degenerate numbers: a NaN or missing metric, NaN or integer weights, a zero standard
deviation, weights that embed everything alike, NaN or infinite settings. Each is an error naming the
file and the field or tensor; nothing shows a NaN as 0.00 and nothing writes NaN embeddings."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.badinput.harness import assert_user_error, run_cli, tree, unchanged


def run_copy(world, tmp_path, change_metrics):
    run = shutil.copytree(world.run, tmp_path / "run")
    metrics = json.loads((run / "metrics.json").read_text())
    change_metrics(metrics)
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


METRICS = [
    ("rank1-null", lambda m: m["DT-ST"].update(rank1=None), "DT-ST.rank1"),
    ("map-missing", lambda m: m["AD-LT"].pop("mAP"), "AD-LT.mAP"),
    ("rank1-text", lambda m: m["Any-Time"].update(rank1="high"), "Any-Time.rank1"),
    ("rank1-bool", lambda m: m["NT-ST"].update(rank1=True), "NT-ST.rank1"),
]


@pytest.mark.parametrize("change, field", [pytest.param(c, f, id=i) for i, c, f in METRICS])
def test_a_missing_or_non_numeric_metric_is_never_shown_as_zero(world, tmp_path, capsys, change, field):
    run = run_copy(world, tmp_path, change)
    result = run_cli(capsys, "export", run, tmp_path / "pkg")
    assert_user_error(result, "metrics.json", field)
    assert not (tmp_path / "pkg").exists()


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_a_non_finite_metric_literal_is_refused(world, tmp_path, capsys, literal):
    run = shutil.copytree(world.run, tmp_path / "run")
    text = (run / "metrics.json").read_text()
    (run / "metrics.json").write_text(text.replace('"rank1": 0.5,', f'"rank1": {literal},', 1))
    result = run_cli(capsys, "export", run, tmp_path / "pkg")
    assert_user_error(result, "metrics.json")
    assert not (tmp_path / "pkg").exists()


def package_copy(world, tmp_path, change_weights=None, change_config=None):
    package = shutil.copytree(world.package, tmp_path / "package")
    if change_weights is not None:
        from safetensors.torch import load_file, save_file

        tensors = load_file(str(package / "model.safetensors"))
        change_weights(tensors)
        save_file(tensors, str(package / "model.safetensors"))
    if change_config is not None:
        config = json.loads((package / "config.json").read_text())
        change_config(config)
        (package / "config.json").write_text(json.dumps(config))
    return package


def _first(tensors, floating=True):
    return next(n for n, t in tensors.items() if t.is_floating_point() == floating and t.ndim >= 2)


def _nan(tensors):
    name = _first(tensors)
    tensors[name][0].view(-1)[0] = float("nan")


def _inf(tensors):
    name = _first(tensors)
    tensors[name].view(-1)[-1] = float("inf")


def _as_int(tensors):
    import torch

    name = _first(tensors)
    tensors[name] = tensors[name].round().to(torch.int64)


def _as_bool(tensors):
    name = _first(tensors)
    tensors[name] = tensors[name] > 0


def _zero(tensors):
    for tensor in tensors.values():
        if tensor.is_floating_point():
            tensor.zero_()


WEIGHTS = [
    ("nan-weight", _nan, "NaN or infinite"),
    ("inf-weight", _inf, "NaN or infinite"),
    ("int-weight", _as_int, "integer"),
    ("bool-weight", _as_bool, "boolean"),
    ("all-zero-weights", _zero, "embeddings are unusable"),
]


@pytest.mark.parametrize("change, reason", [pytest.param(c, r, id=i) for i, c, r in WEIGHTS])
def test_bad_weights_are_refused_on_load_naming_the_tensor(world, tmp_path, capsys, change, reason):
    package = package_copy(world, tmp_path, change_weights=change)
    out = tmp_path / "out" / "f.npz"
    with unchanged(package):
        result = run_cli(capsys, "embed", package, world.images, "--out", out, "--no-progress")
    assert_user_error(result, reason)
    if reason != "embeddings are unusable":
        assert "tensor '" in result.err
    assert tree(tmp_path / "out") == {}


CONFIGS = [
    ("std-zero", lambda c: c["normalization"][1].__setitem__(0, 0.0), "normalization"),
    ("std-negative", lambda c: c["normalization"][1].__setitem__(0, -1.0), "normalization"),
    ("mean-huge", lambda c: c["normalization"][0].__setitem__(0, 1e300), "normalization"),
    ("input-size-zero", lambda c: c.__setitem__("input_size", [0, 0]), "input_size"),
    ("input-size-huge", lambda c: c.__setitem__("input_size", [100000, 100000]), "input_size"),
]


@pytest.mark.parametrize("change, field", [pytest.param(c, f, id=i) for i, c, f in CONFIGS])
def test_a_degenerate_package_config_is_refused_before_embedding(world, tmp_path, capsys, change, field):
    package = package_copy(world, tmp_path, change_config=change)
    result = run_cli(capsys, "embed", package, world.images, "--out", tmp_path / "f.npz", "--no-progress")
    assert_user_error(result, field)
    assert not (tmp_path / "f.npz").exists()


SETTINGS = [
    ("lr-nan", ["--set", "lr=nan"], "lr"),
    ("lr-inf", ["--set", "lr=inf"], "lr"),
    ("image-size-zero", ["--set", "image_size=[0,0]"], "image_size"),
    ("epochs-huge", ["--set", "epochs=1e30"], "epochs"),
    ("time-limit-nan", ["--time-limit", "nan"], "time-limit"),
    ("memory-limit-inf", ["--memory-limit", "inf"], "memory-limit"),
]


@pytest.mark.parametrize("args, field", [pytest.param(a, f, id=i) for i, a, f in SETTINGS])
def test_non_finite_settings_are_refused_at_submission(world, tmp_path, capsys, args, field):
    runner = tmp_path / "runner"
    result = run_cli(capsys, "runner", "--runner-dir", runner, "submit", "train", "baseline", "--data", world.data,
                     *args)
    assert_user_error(result, field)
    assert not (runner / "queue.sqlite3").exists()
