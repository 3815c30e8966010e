"""Train and evaluate the Uni-AT ablation rows under one budget and print the paper's table.

    python -m atzoo_uniat.ablation --data ROOT --out RUNS_DIR [--budget cpu] [--set KEY=VALUE ...]

Each row is an ordinary run directory ``RUNS_DIR/METHOD`` made by the shared runner. The command
is resumable: a row whose run has ``metrics.json`` is not trained again, a row interrupted during
training is resumed from its last checkpoint, and a trained but unevaluated row is evaluated.
``RUNS_DIR/ablation.json`` records the budget so that rows trained under different budgets are
never mixed in one table; the table is also written to ``RUNS_DIR/ablation.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any
from collections.abc import Sequence

from atzoo.errors import AtzooError
from atzoo.io import read_json, write_json_atomic, write_text_atomic
from atzoo.protocol import ANY_TIME, SCENARIO_NAMES
from atzoo_uniat.methods import ABLATION_ROWS, CPU_OVERRIDES

BUDGETS: dict[str, dict[str, Any]] = {
    "published": {},
    "cpu": CPU_OVERRIDES,
    "smoke": {**CPU_OVERRIDES, "epochs": 1, "iters_per_epoch": 2, "warmup_epochs": 0},
}
"""``published``: the paper's recipe (needs a GPU and the real dataset). ``cpu``: `CPU_OVERRIDES`.
``smoke``: one epoch of two iterations, to check the command end to end."""

ROW_LABELS = {
    "uniat-baseline": "Baseline",
    "uniat-said": "+SAID",
    "uniat-said-moae": "+SAID+MoAE",
    "uniat-said-hdw": "+SAID+HDW",
    "uniat": "+SAID+MoAE+HDW (Uni-AT)",
}

PAPER_ANY_TIME = {
    "uniat-baseline": (50.90, 34.75),
    "uniat-said": (52.03, 37.49),
    "uniat-said-moae": (53.70, 38.76),
    "uniat-said-hdw": (53.32, 39.61),
    "uniat": (55.80, 41.38),
}
"""The paper's ablation, Any-Time Rank-1 / mAP in %, 403k release (reported, not verified here)."""

STATE_FILE = "ablation.json"
TABLE_FILE = "ablation.md"


def budget_overrides(budget: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The overrides of a named budget, updated by ``extra`` (``--set`` pairs)."""
    if budget not in BUDGETS:
        raise AtzooError(f"unknown budget {budget!r}; expected one of {', '.join(BUDGETS)}")
    return {**BUDGETS[budget], **(extra or {})}


def _claim_runs_dir(runs_dir: Path, budget: str, overrides: dict[str, Any]) -> None:
    """Record the budget in RUNS_DIR, or refuse if the rows already there used another one."""
    state_path = runs_dir / STATE_FILE
    state = {"format": "atzoo-uniat-ablation-1", "budget": budget, "overrides": overrides}
    if state_path.exists():
        saved = read_json(state_path)
        if (saved.get("budget"), saved.get("overrides")) != (budget, overrides):
            raise AtzooError(f"{runs_dir} holds an ablation run with budget {saved.get('budget')!r} and overrides "
                             f"{saved.get('overrides')}; this one asks for {budget!r} with {overrides}. "
                             f"Use another --out, or the same budget and --set values to resume.")
        return
    runs_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(state_path, state)


def ensure_run(method: str, data_root: Path, run_dir: Path, overrides: dict[str, Any], *, registry=None,
               progress: bool = True) -> dict[str, Any]:
    """The metrics of ``method``'s run in ``run_dir``, training / resuming / evaluating only what is missing."""
    from atzoo.runner import evaluate_run, train
    from atzoo.runner.rundir import CONFIG, METRICS_FILE, MODEL

    if (run_dir / METRICS_FILE).is_file():
        return read_json(run_dir / METRICS_FILE)
    if (run_dir / MODEL).is_file():
        return evaluate_run(run_dir, data_root, registry=registry, progress=progress)
    resume = (run_dir / CONFIG).is_file()
    train(method, data_root, run_dir, overrides, resume=resume, registry=registry, progress=progress)
    return read_json(run_dir / METRICS_FILE)


def run_ablation(data_root: str | Path, runs_dir: str | Path, *, budget: str = "cpu",
                 extra_overrides: dict[str, Any] | None = None, methods: Sequence[str] = ABLATION_ROWS,
                 registry=None, progress: bool = True) -> dict[str, dict[str, Any]]:
    """Every row's metrics, in ``methods`` order; writes ``ablation.md`` next to the runs."""
    data_root, runs_dir = Path(data_root), Path(runs_dir)
    if not data_root.is_dir():
        raise AtzooError(f"dataset root {data_root} does not exist or is not a folder")
    overrides = budget_overrides(budget, extra_overrides)
    _claim_runs_dir(runs_dir, budget, overrides)
    results = {}
    for method in methods:
        if progress:
            print(f"[ablation] {method}", file=sys.stderr, flush=True)
        results[method] = ensure_run(f"uniat:{method}", data_root, runs_dir / method, overrides,
                                     registry=registry, progress=progress)
    write_text_atomic(runs_dir / TABLE_FILE, format_table(results, budget) + "\n")
    return results


def _pair(summary: dict[str, Any]) -> str:
    return f"{100 * summary['rank1']:.2f}/{100 * summary['mAP']:.2f}"


def format_table(results: dict[str, dict[str, Any]], budget: str) -> str:
    """A Markdown table: measured Any-Time and per-scenario Rank-1/mAP (%), then the paper's Any-Time."""
    header = ["row", "method", f"Any-Time ({budget})", *SCENARIO_NAMES, "paper Any-Time"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, metrics in results.items():
        paper = PAPER_ANY_TIME.get(method)
        cells = [ROW_LABELS.get(method, method), method, _pair(metrics[ANY_TIME]),
                 *(_pair(metrics[name]) for name in SCENARIO_NAMES),
                 f"{paper[0]:.2f}/{paper[1]:.2f}" if paper else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m atzoo_uniat.ablation",
        description="Train and evaluate the five Uni-AT ablation rows under one budget (resumable) and print "
                    "the table next to the paper's Any-Time Rank-1/mAP.")
    parser.add_argument("--data", required=True, help="dataset root (AT-USTC layout)")
    parser.add_argument("--out", required=True, help="folder for the five run directories")
    parser.add_argument("--budget", default="cpu", choices=sorted(BUDGETS),
                        help="training budget (default cpu: the small CPU_OVERRIDES recipe)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="extra override for every row, as in `atzoo train --set`")
    parser.add_argument("--rows", nargs="+", default=list(ABLATION_ROWS), choices=ABLATION_ROWS,
                        help="train only these rows")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from atzoo.config import parse_overrides

    args = build_parser().parse_args(argv)
    try:
        results = run_ablation(args.data, args.out, budget=args.budget, extra_overrides=parse_overrides(args.overrides),
                               methods=args.rows, progress=not args.quiet)
    except AtzooError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_table(results, args.budget))
    return 0


if __name__ == "__main__":
    sys.exit(main())
