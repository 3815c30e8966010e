"""`atzoo evaluate RUN_OR_PACKAGE --cross NAME=ROOT ...`: the zero-shot cross-dataset test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from atzoo.errors import AtzooError


def _load_model(source: Path) -> tuple[Any, Any, dict[str, Any], str, Path]:
    """(model, recipe, config, kind, weights path) of a run directory or a model package."""
    from atzoo.io import read_json_checked
    from atzoo.package import PACKAGE_KIND, build_package_model, config_kind, read_package
    from atzoo.runner.evaluation import load_run_model
    from atzoo.runner.recipe import ResolvedRecipe
    from atzoo.runner.rundir import MODEL, open_run_dir

    config_file = source / "config.json"
    config = read_json_checked(config_file, AtzooError) if config_file.is_file() else None
    if config_kind(config) == PACKAGE_KIND:
        package = read_package(source)
        model = build_package_model(package)
        return model, ResolvedRecipe.from_json(package.config["recipe"]), package.config, "package", package.weights
    run = open_run_dir(source, need=("config.json", MODEL))
    import torch

    model, recipe = load_run_model(run, _registry(), torch.device("cpu"))
    return model, recipe, run.config, "run", run.file(MODEL)


def _registry():
    from atzoo.registry import load_registry

    return load_registry()


def _check_out(out: Path, source: Path, kind: str, roots: list[Path]) -> None:
    """--out is a new or replaceable .json file, never inside a dataset root or a model package
    (a package holds only its four files, so that it stays uploadable)."""
    if out.suffix.lower() != ".json":
        raise AtzooError(f"--out {out}: expected a .json file name")
    if out.is_dir():
        raise AtzooError(f"--out {out} is a folder; expected a .json file name")
    resolved = out.resolve()
    protected = [("dataset root", root) for root in roots] + ([("model package", source)] if kind == "package" else [])
    for what, folder in protected:
        if resolved.is_relative_to(folder.resolve()):
            raise AtzooError(f"--out {out} is inside the {what} {folder}; write the results elsewhere")


def _declared_heads(config: dict[str, Any]) -> dict | None:
    heads = config.get("cross_heads")
    if heads is not None and not isinstance(heads, dict):
        raise AtzooError(f"the model's config has \"cross_heads\" = {heads!r}; expected an object "
                         "{\"LAYOUT\" or \"LAYOUT/SETTING\": SCENARIO or OUTPUT}")
    return heads


def run_cross(source: Path, specs: tuple[str, ...], *, trials: int | None, seed: int, out: Path | None,
              as_json: bool) -> None:
    """Check every NAME=ROOT and the model, evaluate, write the results (run: cross_metrics.json
    in the run; `out` when given), print them."""
    from atzoo.formats.cross_metrics import CROSS_METRICS, cross_metrics_model, write_cross_metrics
    from atzoo.formats.model import model_data
    from atzoo.hub import sha256_file
    from atzoo.runner.cross_evaluation import evaluate_model_cross, parse_cross_spec, read_targets

    if trials is not None and trials < 1:
        raise AtzooError(f"--trials {trials}: expected at least 1 trial")
    if not source.exists():
        raise AtzooError(f"{source}: no such run directory or model package")
    targets = read_targets([parse_cross_spec(spec) for spec in specs], trials)
    model, recipe, config, kind, weights = _load_model(source)
    if out is not None:
        _check_out(out, source, kind, [target.root for target in targets])
    heads = _declared_heads(config)
    result = evaluate_model_cross(model, recipe, targets, heads=heads, seed=seed, trials=trials,
                                  progress=not as_json)
    result["model"] = {"source": str(source.resolve()), "kind": kind, "method": config.get("method"),
                       "weights_sha256": sha256_file(weights), "declared_heads": heads}
    checked = cross_metrics_model(result)
    destination = out or (source / CROSS_METRICS if kind == "run" else None)
    if destination is not None:
        write_cross_metrics(destination, checked)
    if as_json:
        click.echo(json.dumps(model_data(checked), indent=2))
    else:
        print_cross(result)
        click.echo(f"Results written to {destination}" if destination else
                   "Results not written (a package is left as it is; pass --out FILE to keep them)")


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def print_cross(result: dict[str, Any]) -> None:
    from rich.table import Table

    from atzoo.cli.output import console
    from atzoo.protocol import SCENARIO_NAMES

    out = console()
    for dataset in result["datasets"].values():
        table = Table(title=f"{dataset['title']} ({dataset['release']}, {dataset['root']})")
        for heading in ("setting", "head", "R1", "R5", "R10", "mAP", "mINP", "queries", "trials"):
            table.add_column(heading, justify="left" if heading == "setting" else "right")
        for setting, values in dataset["settings"].items():
            spread = values["spread"]
            cells = [_percent(values[k]) + (f" ± {100 * spread[k]:.2f}" if values["trials"] > 1 else "")
                     for k in ("rank1", "rank5", "rank10", "mAP", "mINP")]
            head = values["head"]
            label = SCENARIO_NAMES[head] if dataset["outputs"] == len(SCENARIO_NAMES) else f"output {head}"
            table.add_row(setting, label, *cells, f"{values['queries']:g}", str(values["trials"]))
        out.print(table)
    average = result["paper_average"]
    if average["missing"]:
        click.echo(f"Paper average (R1/mAP over {', '.join(average['datasets'])}): not computed, missing "
                   f"{', '.join(average['missing'])}")
    else:
        click.echo(f"Paper average over {', '.join(average['datasets'])}: R1 {_percent(average['rank1'])} / "
                   f"mAP {_percent(average['mAP'])}")
