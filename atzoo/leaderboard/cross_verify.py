"""Verification of an entry's cross-dataset figures on the public datasets the verifier has.

The verifier names its local copies (`--cross NAME=ROOT`); the exact weights are evaluated with
each dataset's protocol, and each reported dataset figure is compared with the measured one under
the same tolerance as the AT-USTC metrics. Reported datasets the verifier does not have are listed
in the verified block (``cross_unavailable``), never guessed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from atzoo.errors import AtzooError, LeaderboardError
from atzoo.formats.entry import CROSS_AVERAGE_DATASETS, METRICS, CrossDatasetResults, Entry
from atzoo.package import ModelPackage
from atzoo.runner.cross_evaluation import CrossTarget, evaluate_model_cross, read_targets


def cross_targets(entry: Entry, specs: Sequence[tuple[str, str | os.PathLike]]) -> list[CrossTarget]:
    """The datasets to re-measure, read and checked before any weights are fetched."""
    if not specs:
        return []
    if entry.cross_dataset is None:
        raise LeaderboardError(f"entry {entry.id} reports no cross-dataset results; there is nothing to re-measure "
                               "with --cross")
    try:
        return read_targets(specs)
    except AtzooError as error:
        raise LeaderboardError(f"cannot verify the cross-dataset results: {error}") from None


def reported_datasets(entry: Entry) -> list[str]:
    """The datasets an entry's cross-dataset claim rests on (the five averaged ones for an average only)."""
    results = entry.cross_dataset
    if results is None:
        return []
    return list(results.datasets) or list(CROSS_AVERAGE_DATASETS)


def measure_cross(package: ModelPackage, model: Any, targets: Sequence[CrossTarget], context: Any, progress: bool
                  ) -> CrossDatasetResults:
    """The headline figure (percent, 2 decimals) of every target, measured with `model`."""
    from atzoo.runner.recipe import ResolvedRecipe

    recipe = ResolvedRecipe.from_json(package.config["recipe"])
    heads = package.config.get("cross_heads")
    result = evaluate_model_cross(model, recipe, targets, heads=heads if isinstance(heads, dict) else None,
                                  progress=progress, context=context)
    datasets: dict[str, Any] = {}
    for name, measured in result["datasets"].items():
        headline = measured["headline"]
        if headline is not None:
            datasets[name] = {metric: round(100.0 * headline[metric], 2) for metric in METRICS}
    return CrossDatasetResults.model_validate({"protocol_version": result["cross_protocol_version"],
                                               "datasets": datasets})


def cross_differences(entry: Entry, measured: CrossDatasetResults) -> list[tuple[float, str]]:
    """|reported - measured| of every reported dataset metric the verifier measured."""
    reported = entry.cross_dataset
    differences: list[tuple[float, str]] = []
    if reported is None:
        return differences
    for name, claimed in reported.datasets.items():
        found = measured.datasets.get(name)
        if found is None:
            continue
        for metric in METRICS:
            value = getattr(claimed, metric)
            if value is not None:
                got = getattr(found, metric)
                differences.append((round(abs(value - got), 4),
                                    f"{name} {metric}: reported {value:.2f}, measured {got:.2f}"))
    return differences


def unavailable(entry: Entry, measured: CrossDatasetResults) -> list[str]:
    return [name for name in reported_datasets(entry) if name not in measured.datasets]


def entry_cross_dataset(path: str | os.PathLike, sha256: str) -> dict[str, Any]:
    """An entry's ``cross_dataset`` from a file `atzoo evaluate --cross` wrote: each dataset's headline
    figure in percent. The file must have been measured with the weights being submitted (`sha256`)."""
    from pathlib import Path

    from atzoo.formats.cross_metrics import read_cross_metrics

    path = Path(path)
    if not path.is_file():
        raise LeaderboardError(f"{path}: no such file (write it with `atzoo evaluate RUN --cross NAME=ROOT ...`)")
    try:
        results = read_cross_metrics(path)
    except AtzooError as error:
        raise LeaderboardError(f"{error}") from None
    if results.model.weights_sha256 != sha256:
        raise LeaderboardError(f"{path} was measured with other weights (sha256 {results.model.weights_sha256}, "
                               f"the submitted weights have {sha256})")
    figures = {name: {metric: round(100.0 * getattr(result.headline, metric), 2) for metric in METRICS}
               for name, result in results.datasets.items() if result.headline is not None}
    if not figures:
        raise LeaderboardError(f"{path} holds no dataset's headline figure")
    return {"protocol_version": results.cross_protocol_version, "datasets": figures}
