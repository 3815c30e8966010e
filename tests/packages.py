"""Shared by the model-package, hub and zoo tests: run directories, packages and a Hub cache on disk."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_model

from atzoo.io import write_json_atomic
from atzoo.package import RUN_FORMAT, export_run
from atzoo.protocol import SCENARIOS

SCENARIO_NAMES = [s.name for s in SCENARIOS] + ["Any-Time"]
TINY_OVERRIDES = {"epochs": 1, "iters_per_epoch": 2, "image_size": [32, 16], "num_workers": 0, "num_persons": 4,
                  "num_instances": 4, "eval_batch_size": 64, "cache": False}


def fake_metrics(base: float = 0.5) -> dict:
    """Six scenarios and their mean as Any-Time, as the evaluator writes them (fractions)."""
    metrics: dict = {"protocol_version": "1.0"}
    for index, name in enumerate(SCENARIO_NAMES[:-1]):
        metrics[name] = {"rank1": base + index / 100, "rank5": 0.9, "rank10": 0.95, "rank20": 0.97,
                         "mAP": base - 0.1, "mINP": 0.2, "queries": 12}
    metrics["Any-Time"] = {key: sum(metrics[name][key] for name in SCENARIO_NAMES[:-1]) / 6
                           for key in ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")}
    metrics["mixed"] = {"Any-Time": {"rank1": 0.4, "rank5": 0.5, "rank10": 0.6, "rank20": 0.7, "mAP": 0.3,
                                     "mINP": 0.1, "queries": 20}}
    return metrics


def fake_results(weights: Path, release: str, base: float = 0.5, images: int = 1000) -> dict:
    """`fake_metrics` with the provenance the runner records for the weights file `weights`."""
    from atzoo.io import sha256_file

    provenance = {"dataset": {"release": release, "fingerprint": "e" * 64, "image_count": images},
                  "weights_sha256": sha256_file(weights), "evaluator_version": "atzoo-1.0",
                  "protocol_version": "1.0", "date": "2026-12-01T00:00:00Z"}
    return {"format_version": 1, **fake_metrics(base), "provenance": provenance}


def make_run_dir(path: Path, *, synthetic: bool = False, seed: int = 0, release: str = "403k") -> Path:
    """An untrained but complete run directory (config, weights, metrics with provenance on `release`,
    or on the synthetic release when `synthetic`): fast, no training."""
    from atzoo.registry import load_registry
    from atzoo.runner.recipe import build_model, resolve_recipe

    registry = load_registry()
    recipe = resolve_recipe("baseline", {"image_size": [32, 16]}, registry)
    torch.manual_seed(seed)
    model = build_model(recipe, 4, 6, registry)
    path.mkdir(parents=True)
    data_root = path.parent / f"{path.name}-data"
    data_root.mkdir()
    if synthetic:
        (data_root / "synthetic.json").write_text("{}")
    save_model(model, str(path / "model.safetensors"))
    write_json_atomic(path / "config.json", {
        "format": RUN_FORMAT, "protocol_version": "1.0", "recipe": recipe.to_json(), "data_root": str(data_root),
        "dataset_fingerprint": "f" * 64, "num_persons": 4, "num_clothes": 6})
    write_json_atomic(path / "metrics.json", fake_results(path / "model.safetensors",
                                                          "synthetic" if synthetic else release))
    return path


def make_package(tmp_path: Path, name: str = "pkg", **options) -> Path:
    run = make_run_dir(tmp_path / f"{name}-run", synthetic=True, **options)
    return export_run(run, tmp_path / name)


def populate_hf_cache(cache: Path, repo_id: str, package: Path, revision: str = "main") -> str:
    """Lay `package` out as the Hub cache would after a download of `repo_id` at `revision`."""
    commit = hashlib.sha1(f"{repo_id}{revision}".encode()).hexdigest()
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for file in package.iterdir():
        shutil.copy(file, snapshot / file.name)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    return commit


def make_measured_package(tmp_path: Path, data_root: Path, name: str = "pkg") -> Path:
    """A package whose results.json and dataset fingerprint are those of `data_root`, measured the
    way `atzoo leaderboard verify` measures, as a run trained and evaluated there would have them."""
    from atzoo.data import parse_root
    from atzoo.io import read_json
    from atzoo.leaderboard.verify import measure_package
    from atzoo.package import read_package
    from atzoo.runner.evaluation import measured_results

    package = make_package(tmp_path, name)
    measured = measure_package(read_package(package), data_root, device="cpu", progress=False)
    results = measured_results(measured, parse_root(data_root), package / "model.safetensors")
    write_json_atomic(package / "results.json", results.to_json())
    config = read_json(package / "config.json")
    write_json_atomic(package / "config.json",
                      {**config, "dataset_fingerprint": results.provenance.dataset.fingerprint})
    return package
