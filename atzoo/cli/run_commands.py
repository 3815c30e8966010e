"""`atzoo train`, `atzoo evaluate` and `atzoo quickstart`."""

from __future__ import annotations

import time
from pathlib import Path

import click

from atzoo.cli.output import echo_elapsed, elapsed, print_metrics, user_errors
from atzoo.config import parse_overrides
from atzoo.formats import read_json
from atzoo.zoo import QUICKSTART_RUN

DEFAULT_SYNTHETIC_ROOT = Path("data/synthetic-atustc")
DEFAULT_QUICKSTART_RUN = QUICKSTART_RUN


def train_request(method: str | None, config: Path | None, settings: tuple[str, ...]) -> tuple[str, dict]:
    """The method and overrides of `atzoo train`: the recipe file's, then `--set` on top."""
    from atzoo.errors import AtzooError
    from atzoo.runner.recipe import read_recipe_file

    file_method, overrides = read_recipe_file(config) if config is not None else (None, {})
    if method and file_method and method != file_method:
        raise AtzooError(f"METHOD {method!r} differs from the method {file_method!r} of recipe file {config}; "
                         f"give one of them")
    chosen = method or file_method
    if not chosen:
        raise AtzooError("no method given: pass METHOD or a recipe file with `method:` (--config FILE)")
    return chosen, {**overrides, **parse_overrides(settings)}


@click.command()
@click.argument("method", required=False)
@click.option("--config", "config", type=click.Path(path_type=Path, dir_okay=False),
              help="Recipe file (YAML or JSON: method, backbone, train), e.g. from "
                   "`atzoo describe methods METHOD --format yaml`; --set overrides it.")
@click.option("--data", "data_root", type=click.Path(path_type=Path), help="AT-USTC root (or a synthetic one).")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Run directory to write.")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Override a training setting (see `atzoo describe methods METHOD`) or a backbone "
                   "argument as backbone.NAME=VALUE. Repeatable.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--skip-bad-names", is_flag=True, help="Skip image files that do not follow the layout.")
@click.option("--json", "as_json", is_flag=True, help="Print the final metrics as JSON.")
def train(method: str | None, config: Path | None, data_root: Path | None, out_dir: Path, settings: tuple[str, ...],
          resume: bool, skip_bad_names: bool, as_json: bool) -> None:
    """Train METHOD (or the method of --config) on a dataset, then evaluate it on the six scenarios.

    Every setting is checked before anything is read or written. Works the same under
    `torchrun --nproc_per_node=N -m atzoo train ...` (DistributedDataParallel).
    """
    from atzoo.outputs import check_fresh_folder, check_placement
    from atzoo.runner import train as run_training
    from atzoo.runner.distributed import is_main_process
    from atzoo.runner.rundir import METRICS_FILE

    inputs = [data_root] if data_root is not None else []
    if resume:
        check_placement(out_dir, inputs)
    else:
        check_fresh_folder(out_dir, inputs, hint="use --resume to continue it, or choose another --out")
    started = time.perf_counter()
    method, overrides = train_request(method, config, settings)
    run = run_training(method, data_root, out_dir, overrides, resume=resume, skip_bad_names=skip_bad_names)
    metrics_file = run.file(METRICS_FILE)
    if is_main_process():
        print_metrics(read_json(metrics_file), as_json)
        if not as_json:
            click.echo(f"Run written to {run.path}")
        echo_elapsed("atzoo train", started)


@click.command()
@click.argument("run_dir", metavar="RUN_OR_PACKAGE", type=click.Path(path_type=Path))
@click.option("--data", "data_root", type=click.Path(path_type=Path),
              help="Dataset root (default: the one the run was trained on).")
@click.option("--skip-bad-names", is_flag=True, help="Skip image files that do not follow the layout.")
@click.option("--cross", "cross", multiple=True, metavar="NAME=ROOT",
              help="Zero-shot test on a public dataset instead (repeatable): NAME is one of market1501, cuhk03, "
                   "msmt17, sysu-mm01, regdb, llcm, prcc, ltcc, deepchange, vc-clothes; see docs/generalization.md.")
@click.option("--trials", type=int, default=None, help="With --cross: trials of the randomised settings "
              "(default: each protocol's own, 10).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="With --cross: seed of the randomised settings' trials.")
@click.option("--out", "out", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the results to this new file (default: metrics.json on the run's own data, "
                   "metrics-<fingerprint>.json beside it on any other data; with --cross, cross_metrics.json).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def evaluate(run_dir: Path, data_root: Path | None, skip_bad_names: bool, cross: tuple[str, ...],
             trials: int | None, seed: int, out: Path | None, as_json: bool) -> None:
    """Evaluate the model of RUN_OR_PACKAGE on the six scenarios and the mixed test, or with --cross on public
    datasets zero-shot (writes cross_metrics.json). Results on the run's own data go to its metrics.json;
    results on any other data are written beside it, never over it."""

    if cross:
        from atzoo.cli.cross_commands import run_cross

        with user_errors():
            run_cross(run_dir, cross, trials=trials, seed=seed, out=out, as_json=as_json)
        return
    from atzoo.runner.distributed import is_main_process
    from atzoo.runner.evaluation import evaluate_run_to

    with elapsed("atzoo evaluate"), user_errors():
        metrics, target = evaluate_run_to(run_dir, data_root, skip_bad_names=skip_bad_names, out=out)
        if is_main_process() and metrics is not None:
            print_metrics(metrics, as_json)
            click.echo(f"Results written to {target}", err=True)


@click.command()
@click.option("--data", "data_root", type=click.Path(path_type=Path), default=DEFAULT_SYNTHETIC_ROOT,
              show_default=True, help="Where the synthetic dataset is (generated there if missing).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=DEFAULT_QUICKSTART_RUN,
              show_default=True, help="Run directory (a timestamped sibling is used if it exists).")
@click.option("--method", default="builtins:baseline", show_default=True,
              help="Method to train (the built-in baseline unless given: a plugin's `baseline` never replaces it).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Override a training setting.")
def quickstart(data_root: Path, out_dir: Path, method: str, settings: tuple[str, ...]) -> None:
    """Generate the synthetic AT-USTC (if missing), train `builtins:baseline` on it, evaluate, and compare with the
    same model at its random initialisation."""
    from atzoo.cli.output import console
    from atzoo.data.synthetic import generate
    from atzoo.evaluation.report import print_comparison
    from atzoo.runner import train as run_training
    from atzoo.runner.evaluation import evaluate_initialisation
    from atzoo.runner.rundir import METRICS_FILE

    started = time.perf_counter()
    if not data_root.exists():
        click.echo(f"Generating the synthetic AT-USTC dataset in {data_root} ...")
        generate(data_root)
    if out_dir.exists():
        out_dir = out_dir.with_name(f"{out_dir.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    click.echo(f"Training {method} on {data_root} into {out_dir} ...")
    run = run_training(method, data_root, out_dir, parse_overrides(settings))
    metrics = read_json(run.file(METRICS_FILE))
    print_metrics(metrics, as_json=False)
    click.echo("Evaluating the same model at its random initialisation, for comparison ...")
    initial = evaluate_initialisation(run.path)
    if initial is not None:
        print_comparison(initial, metrics, ("random init", "trained"), console())
    minutes = (time.perf_counter() - started) / 60
    click.echo(f"Done in {minutes:.1f} min. Run directory: {run.path} "
               f"(model.safetensors, metrics.json, train_log.jsonl). Evaluate again with "
               f"`atzoo evaluate {run.path}`.")
