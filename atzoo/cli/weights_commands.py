"""`atzoo export`, `push`, `pull`, `embed` and `zoo`: weights, never the dataset."""

from __future__ import annotations

import json
from pathlib import Path

import click

from atzoo.cli.output import console, elapsed, user_errors

MAX_NAMES_SHOWN = 20


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--dataset-release", type=click.Choice(["403k", "135k"]),
              help="Check that the run's results are on this AT-USTC release (default: the release recorded "
                   "with the results: 403k when the data has the official counts, else custom).")
@click.option("--license", "license_", default=None,
              help="Hub licence id of the weights (default: apache-2.0 for synthetic data; 'other' with the "
                   "AT-USTC research-only terms otherwise, where only non-commercial licences are accepted).")
@click.option("--overwrite", is_flag=True, help="Replace OUT_DIR when it exists and is not empty.")
def export(run_dir: Path, out_dir: Path, dataset_release: str | None, license_: str | None, overwrite: bool) -> None:
    """Write a model package of RUN_DIR to OUT_DIR: weights, config, aggregate results, model card."""
    from atzoo.package import export_run

    with user_errors():
        out = export_run(run_dir, out_dir, dataset_release=dataset_release, overwrite=overwrite, license=license_)
    click.echo(f"Model package written to {out}")


@click.command()
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--repo", "repo_id", required=True, metavar="ORG/NAME", help="Hub model repository.")
@click.option("--revision", help="Branch to commit to (created when missing; default main).")
@click.option("--private", is_flag=True, default=None, help="Create the repository as private.")
@click.option("--dry-run", is_flag=True, help="Check and print what would be uploaded; send nothing.")
def push(out_dir: Path, repo_id: str, revision: str | None, private: bool | None, dry_run: bool) -> None:
    """Upload a model package (made by `atzoo export`) after the upload guard has checked it."""
    from atzoo.hub import push as push_package

    with user_errors():
        plan = push_package(out_dir, repo_id, revision=revision, dry_run=dry_run, private=private)
    click.echo(("Would upload " if dry_run else "Uploaded ") + plan.describe())


@click.command()
@click.argument("ref", metavar="ORG/NAME[@REVISION]")
@click.option("--revision", help="Revision to pin (default: the zoo's, else main).")
@click.option("--sha256", help="Expected sha256 of model.safetensors (default: the zoo's registered one).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def pull(ref: str, revision: str | None, sha256: str | None, as_json: bool) -> None:
    """Download a model package into the Hugging Face cache (offline: HF_HUB_OFFLINE=1 reads it)."""
    from atzoo.hub import pull as pull_package

    with user_errors():
        result = pull_package(ref, revision=revision, sha256=sha256)
    if as_json:
        click.echo(json.dumps({"path": str(result.path), "repo_id": result.repo_id, "revision": result.revision,
                               "sha256": result.sha256, "verified_against": result.verified_against,
                               "files": list(result.files)}, indent=2))
        return
    click.echo(f"{result.repo_id}@{result.revision} -> {result.path}")
    click.echo(f"sha256 {result.sha256} " + (f"verified against {result.verified_against}"
                                             if result.verified_against else "NOT verified (no --sha256, no zoo entry)"))


@click.command()
@click.argument("model_ref", metavar="MODEL")
@click.argument("inputs", nargs=-1, required=True, metavar="IMAGE_OR_DIR...")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Features file (.npz).")
@click.option("--batch-size", default=64, show_default=True, type=int)
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.option("--overwrite", is_flag=True, help="Replace --out when it is an existing features file.")
def embed(model_ref: str, inputs: tuple[str, ...], out: Path, batch_size: int, device: str, no_progress: bool,
          overwrite: bool) -> None:
    """Embed images with MODEL (a package folder, ORG/NAME[@REV] or a run folder of `atzoo train`)
    into a features file."""
    from atzoo.embed import embed as embed_images

    with elapsed("atzoo embed"), user_errors():
        result = embed_images(model_ref, inputs, out, batch_size=batch_size, device=device,
                              progress=not no_progress, overwrite=overwrite)
    click.echo(f"{result.count} embeddings {result.shape} written to {result.path}")
    if result.labelled:
        click.echo(f"Labels read from the AT-USTC names: evaluate with `atzoo eval-features {result.path}`")
        return
    names = [str(path) for path in result.unlabelled]
    shown = "\n  ".join(names[:MAX_NAMES_SHOWN]) + (f"\n  ... and {len(names) - MAX_NAMES_SHOWN} more"
                                                   if len(names) > MAX_NAMES_SHOWN else "")
    click.echo(f"{len(names)} of {result.count} images do not follow the AT-USTC names "
               f"(pNNN-dNN-cNN/camNN-fF-NNNN.jpg); their labels are -1:\n  {shown}")
    labelled = result.count - len(names)
    if labelled:
        click.echo(f"The other {labelled} keep the labels read from their names. `atzoo eval-features` needs every "
                   f"row labelled: embed only the AT-USTC-named images to evaluate them.")
    else:
        click.echo("`atzoo eval-features` cannot evaluate this file; `paths` identifies each row.")


@click.group()
def zoo() -> None:
    """Pretrained weights registered by the installed plugins."""


@zoo.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
def zoo_list(as_json: bool) -> None:
    """Registered pretrained weights with their six-scenario metrics (cells: Rank-1/mAP, %)."""
    from atzoo.zoo import ZOO_METRICS, list_pretrained

    with user_errors():
        rows = list_pretrained()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(title="atzoo zoo (cells: Rank-1/mAP, %)", show_header=True)
    for column in ("METHOD@TAG", "release"):
        table.add_column(column, no_wrap=True)
    for column in ZOO_METRICS:
        table.add_column(column, no_wrap=True)
    for row in rows:
        cells = []
        for name in ZOO_METRICS:
            metrics = row["metrics"].get(name, {})
            cells.append(f"{100 * metrics['rank1']:.1f}/{100 * metrics['mAP']:.1f}"
                         if "rank1" in metrics and "mAP" in metrics else "-")
        table.add_row(f"{row['method']}@{row['tag']}", row["dataset_release"] or "-", *cells)
    console().print(table)
    for row in rows:
        click.echo(f"{row['method']}@{row['tag']}: {_where(row)}; licence {row['license'] or '-'}")


def _where(row: dict) -> str:
    if row["source"] == "shipped":
        return f"shipped with atzoo in {row['path']} (trained on synthetic data only, not an AT-USTC result)"
    return f"{row['repo_id']}@{row['revision']}"
