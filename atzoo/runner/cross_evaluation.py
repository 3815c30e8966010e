"""The zero-shot cross-dataset test of a model: read every named root first, then embed each
dataset's test images and evaluate its own protocol; results carry their provenance."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atzoo.data.layout import Records
from atzoo.data.layouts import get_layout, read_layout
from atzoo.data.layouts.base import CrossDataset
from atzoo.data.synthetic_layouts import synthetic_layout_of
from atzoo.errors import AtzooError
from atzoo.evaluation.cross import evaluate_dataset, paper_average
from atzoo.evaluation.cross_protocols import CROSS_PROTOCOL_VERSION, get_protocol, protocol_set_names, trial_count
from atzoo.protocol import EVALUATOR_VERSION
from atzoo.runner import distributed
from atzoo.runner.evaluation import extract_features
from atzoo.runner.recipe import ResolvedRecipe



@dataclass(frozen=True)
class CrossTarget:
    """A dataset to test on: its layout name, root and the test images its protocol reads."""

    name: str
    root: Path
    dataset: CrossDataset


def parse_cross_spec(spec: str) -> tuple[str, Path]:
    """"NAME=ROOT" -> (layout name, root); the name must be a known layout."""
    name, separator, root = spec.partition("=")
    if not separator or not name.strip() or not root.strip():
        raise AtzooError(f"--cross {spec!r}: expected NAME=ROOT, e.g. market1501=/data/Market-1501")
    return get_layout(name.strip()).name, Path(root.strip())


def read_targets(specs: Sequence[tuple[str, str | os.PathLike]], trials: int | None = None) -> list[CrossTarget]:
    """Read and check every root before anything is computed, so a bad one stops the test early."""
    targets: list[CrossTarget] = []
    seen: set[str] = set()
    for name, root in specs:
        layout = get_layout(name)
        if layout.name in seen:
            raise AtzooError(f"--cross names {layout.name} twice; give each dataset once")
        seen.add(layout.name)
        protocol = get_protocol(layout.name)
        for setting in protocol.settings:
            trial_count(setting, trials)
        dataset = read_layout(root, layout.name)
        present = [n for n in protocol_set_names(protocol, trials) if n in dataset.sets]
        targets.append(CrossTarget(layout.name, Path(root), dataset.only_sets(present)))
    return targets


def as_records(dataset: CrossDataset) -> Records:
    """The loader's view of a dataset's images (AT-USTC's date, flag and frame do not apply: 0)."""
    zeros = np.zeros(len(dataset), np.int64)
    return Records(root=dataset.root, path=dataset.path, person=dataset.person, date=zeros,
                   clothes=dataset.clothes, camera=dataset.camera, modality=dataset.modality, flag=zeros,
                   frame=zeros)


def provenance(target: CrossTarget) -> dict[str, Any]:
    synthetic = synthetic_layout_of(target.root)
    return {"root": str(target.root.resolve()), "release": "synthetic" if synthetic else "user copy",
            "images": len(target.dataset), "sets": {name: int(len(rows)) for name, rows in target.dataset.sets.items()}}


def evaluate_model_cross(model: torch.nn.Module, recipe: ResolvedRecipe, targets: Sequence[CrossTarget], *,
                         heads: dict | None = None, seed: int = 0, trials: int | None = None,
                         progress: bool = True, context: distributed.Context | None = None) -> dict[str, Any]:
    """Every target's settings with `model`, and the paper's average when its five datasets are there.
    `context`: where to embed (default: the torchrun environment, else this process's device)."""
    own_context = context is None
    context = context or distributed.setup()
    try:
        results: dict[str, dict[str, Any]] = {}
        for target in targets:
            features = extract_features(model, as_records(target.dataset), recipe, context, progress=progress)
            result = evaluate_dataset(target.dataset, features.numpy(), heads=heads, seed=seed, trials=trials)
            result.update(provenance(target))
            results[target.name] = result
    finally:
        if own_context:
            distributed.teardown(context)
    return {"cross_protocol_version": CROSS_PROTOCOL_VERSION, "evaluator_version": EVALUATOR_VERSION,
            "datasets": results, "paper_average": paper_average(results)}
