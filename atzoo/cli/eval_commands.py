"""`atzoo eval-features`: evaluate embeddings stored in a features file."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("eval-features")
@click.argument("features_file", metavar="FEATURES.npz", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead of tables.")
@click.option("--no-mixed", is_flag=True, help="Skip the scenario-agnostic mixed test.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=None,
              help="Queries per similarity block (default: sized from a 256 MB budget and the free memory).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--progress/--no-progress", default=False, help="Show a progress bar per scenario.")
def eval_features(features_file: Path, as_json: bool, no_mixed: bool, chunk_size: int | None, device: str,
                  progress: bool) -> None:
    """Evaluate FEATURES.npz on the six scenarios, Any-Time and the mixed test.

    The file holds `feats` (N, D) or (N, 6, D) and int arrays `pid`, `clothes`, `camera`, `flag`
    (see docs/evaluation.md).
    """
    from atzoo.errors import AtzooError
    from atzoo.evaluation import load_features
    from atzoo.cli.output import print_metrics

    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise AtzooError("--device cuda was asked for but no CUDA device is available; use --device cpu")
    result = load_features(features_file).evaluate(chunk_size=chunk_size, device=device, mixed=not no_mixed,
                                                   progress=progress)
    print_metrics(result, as_json)
