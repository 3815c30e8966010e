"""`atzoo evaluate RUN --cross ...` on all ten synthetic layouts with a trained tiny model, every
metric checked against a plain per-query loop written here; and the command's refusals."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from atzoo.cli.main import cli
from atzoo.data.layouts import LAYOUT_NAMES
from atzoo.data.synthetic_layouts import generate_layout
from atzoo.evaluation.cross import single_shot_gallery
from atzoo.evaluation.cross_protocols import get_protocol
from atzoo.runner import distributed
from atzoo.runner.cross_evaluation import as_records, read_targets
from atzoo.runner.evaluation import extract_features, load_run_model
from atzoo.runner.rundir import open_run_dir

TINY = ["--set", "image_size=[32,16]", "--set", "num_workers=0", "--set", "num_persons=4", "--set",
        "num_instances=4", "--set", "eval_batch_size=64", "--set", "cache=false"]


@pytest.fixture(scope="module")
def trained_run(tiny_synth_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("cross-run") / "baseline"
    result = CliRunner().invoke(cli, ["train", "baseline", "--data", str(tiny_synth_root), "--out", str(out),
                                      "--set", "epochs=2", *TINY, "--json"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def layout_roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("cross-layouts")
    return {name: generate_layout(base / name, name) for name in LAYOUT_NAMES}


def cross_args(roots):
    return [arg for name, root in roots.items() for arg in ("--cross", f"{name}={root}")]


def oracle_query(sims, q, gallery, data, setting):
    """Rank, AP and INP of one query, or None: sort the gallery by similarity (ties by gallery
    order), walk it, skip what the protocol removes, mark true matches."""
    order = sorted(range(len(gallery)), key=lambda i: (-sims[i], i))
    hits = []
    for i in order:
        g = gallery[i]
        if (int(data.camera[q]), int(data.camera[g])) in setting.excluded_pairs:
            continue
        same = data.person[g] == data.person[q]
        if same and setting.same_camera and data.camera[g] == data.camera[q]:
            continue
        if same and setting.clothes == "sc" and data.clothes[g] != data.clothes[q]:
            continue
        if same and setting.clothes == "cc" and data.clothes[g] == data.clothes[q]:
            continue
        hits.append(bool(same))
    positions = [k + 1 for k, hit in enumerate(hits) if hit]
    if not positions:
        return None
    ap = sum((n + 1) / pos for n, pos in enumerate(positions)) / len(positions)
    return positions[0], ap, len(positions) / positions[-1]


def oracle_setting(data, features, setting, head, trials, seed):
    per_trial = []
    for trial in range(trials):
        names = setting.set_names(trial)
        query, gallery = data.sets[names[0]], data.sets[names[1]]
        if setting.cameras:
            query = [q for q in query if data.camera[q] in setting.cameras]
            gallery = [g for g in gallery if data.camera[g] in setting.cameras]
        if setting.gallery_cameras:
            gallery = [g for g in gallery if data.camera[g] in setting.gallery_cameras]
        gallery = np.asarray(gallery, np.int64)
        if setting.single_shot:
            gallery = single_shot_gallery(data, gallery, seed, trial)
        feats = features[:, head] / np.linalg.norm(features[:, head], axis=1, keepdims=True)
        rows = [r for r in (oracle_query(feats[gallery] @ feats[q], q, gallery, data, setting) for q in query) if r]
        per_trial.append({"rank1": np.mean([r[0] <= 1 for r in rows]), "rank5": np.mean([r[0] <= 5 for r in rows]),
                          "rank10": np.mean([r[0] <= 10 for r in rows]), "rank20": np.mean([r[0] <= 20 for r in rows]),
                          "mAP": np.mean([r[1] for r in rows]), "mINP": np.mean([r[2] for r in rows])})
    return {key: float(np.mean([t[key] for t in per_trial])) for key in per_trial[0]}


def test_zero_shot_on_all_ten_layouts_matches_a_per_query_loop(trained_run, layout_roots):
    result = CliRunner().invoke(cli, ["evaluate", str(trained_run), *cross_args(layout_roots), "--trials", "3",
                                      "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output[result.output.index("{"):])
    stored = json.loads((trained_run / "cross_metrics.json").read_text())
    assert printed == stored
    assert set(stored["datasets"]) == set(LAYOUT_NAMES)
    assert stored["model"]["kind"] == "run" and len(stored["model"]["weights_sha256"]) == 64
    run = open_run_dir(trained_run, need=("config.json", "model.safetensors"))
    from atzoo.registry import load_registry

    model, recipe = load_run_model(run, load_registry(), torch.device("cpu"))
    context = distributed.setup()
    checked = 0
    for target in read_targets(list(layout_roots.items()), trials=3):
        features = extract_features(model, as_records(target.dataset), recipe, context, progress=False).numpy()
        features = features[:, None] if features.ndim == 2 else features
        measured = stored["datasets"][target.name]
        assert measured["release"] == "synthetic" and measured["images"] == len(target.dataset)
        for setting in get_protocol(target.name).settings:
            values = measured["settings"][setting.name]
            trials = 3 if setting.randomised else 1
            expected = oracle_setting(target.dataset, features, setting, values["head"], trials, 0)
            for key, value in expected.items():
                assert values[key] == pytest.approx(value, abs=1e-9), (target.name, setting.name, key)
            checked += 1
    assert checked == sum(len(get_protocol(n).settings) for n in LAYOUT_NAMES)
    average = stored["paper_average"]
    headline = [stored["datasets"][n]["headline"] for n in average["datasets"]]
    assert average["rank1"] == pytest.approx(np.mean([h["rank1"] for h in headline]))
    assert average["missing"] == []


def test_unknown_dataset_and_bad_roots_stop_before_anything_is_written(trained_run, layout_roots, tmp_path):
    before = sorted(p.name for p in trained_run.iterdir())
    runner = CliRunner()
    result = runner.invoke(cli, ["evaluate", str(trained_run), "--cross", f"viper={layout_roots['ltcc']}"])
    assert result.exit_code == 2 and "known: market1501" in result.output
    result = runner.invoke(cli, ["evaluate", str(trained_run), "--cross", f"ltcc={layout_roots['prcc']}"])
    assert result.exit_code == 2 and "does not look like LTCC" in result.output
    result = runner.invoke(cli, ["evaluate", str(trained_run), "--cross", f"ltcc={layout_roots['ltcc']}",
                                 "--trials", "0"])
    assert result.exit_code == 2 and "at least 1" in result.output
    result = runner.invoke(cli, ["evaluate", str(trained_run), "--cross", "ltcc"])
    assert result.exit_code == 2 and "NAME=ROOT" in result.output
    result = runner.invoke(cli, ["evaluate", str(trained_run), "--cross", f"ltcc={layout_roots['ltcc']}",
                                 "--out", str(layout_roots["ltcc"] / "results.json")])
    assert result.exit_code == 2 and "inside the dataset root" in result.output
    assert not (layout_roots["ltcc"] / "results.json").exists()
    assert sorted(p.name for p in trained_run.iterdir()) == before
    assert "Traceback" not in result.output
