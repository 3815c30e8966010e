"""`atzoo data`: inspect an AT-USTC root."""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path
from typing import Any
from collections.abc import Iterator

import click

from atzoo.cli.output import user_errors


@contextlib.contextmanager
def _warnings_to_stderr() -> Iterator[None]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for warning in caught:
                click.echo(f"Warning: {warning.message}", err=True)


@click.group()
def data() -> None:
    """Inspect an AT-USTC root (or a synthetic one in the same layout)."""


@data.command()
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON instead of a table.")
@click.option("--skip-bad-names", is_flag=True, help="Skip image files whose names do not follow the layout.")
@click.option("--layout", default=None, metavar="NAME",
              help="Read ROOT as a public layout (market1501, cuhk03, msmt17, sysu-mm01, regdb, llcm, prcc, ltcc, "
                   "deepchange, vc-clothes), or 'detect' to recognise it; default: the public layout ROOT "
                   "plainly is, else AT-USTC.")
def summary(root: Path, as_json: bool, skip_bad_names: bool, layout: str | None) -> None:
    """Statistics of every protocol set of ROOT and a guess of its release.

    Empty sets are shown, not refused: the command exits 0 and warns which ones training and
    evaluation need (those commands stop on them). With --layout, a public dataset's sets are
    counted instead (images, identities, cameras per set).
    """
    from atzoo.data.layout import parse_root

    if layout is None and root.is_dir():
        from atzoo.data.layouts import matching_layouts

        found = matching_layouts(root)
        layout = found[0].name if len(found) == 1 else None
    if layout is not None and layout.lower() not in ("at-ustc", "atustc"):
        _layout_summary(root, None if layout.lower() == "detect" else layout, as_json)
        return
    from atzoo.data.summary import summarize

    with user_errors(), _warnings_to_stderr():
        records = parse_root(root, skip_bad_names=skip_bad_names, progress=not as_json)
    result = summarize(records)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        _print_table(result)
    missing = result["missing_for_training_or_evaluation"]
    if missing:
        click.echo(f"Warning: {len(missing)} empty set(s) that training and evaluation need: {', '.join(missing)}",
                   err=True)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _print_table(result: dict[str, Any]) -> None:
    from rich.table import Table

    from atzoo.cli.output import console

    click.echo(f"{result['root']}: {result['images']:,} images, release {_release_text(result)}")
    table = Table()
    table.add_column("set")
    for heading in ("identities", "clothes/id", "min-max", "RGB cams/id", "IR cams/id", "images"):
        table.add_column(heading, justify="right")
    for name, stats in result["sets"].items():
        clothes = stats["clothes_per_identity"]
        empty = stats["images"] == 0
        table.add_row(
            f"{name} (empty)" if empty else name,
            str(stats["identities"]),
            _number(clothes["mean"]),
            "-" if empty else f"{clothes['min']}-{clothes['max']}",
            _number(stats["rgb_cameras_per_identity"]),
            _number(stats["ir_cameras_per_identity"]),
            f"{stats['images']:,}",
            style="yellow" if empty else None,
        )
    console().print(table)


def _release_text(result: dict[str, Any]) -> str:
    if result["release"] == "other":
        return "other (not the size of a known AT-USTC release)"
    return f"AT-USTC {result['release']}"


def _layout_summary(root: Path, layout: str | None, as_json: bool) -> None:
    from rich.table import Table

    from atzoo.cli.output import console
    from atzoo.data.layouts import get_layout, read_layout
    from atzoo.data.layouts.summary import summarize_dataset

    with user_errors():
        dataset = read_layout(root, layout)
    result = summarize_dataset(dataset)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{result['root']}: {get_layout(dataset.layout).title} layout, {result['images']:,} images")
    table = Table()
    for heading in ("set", "images", "identities", "cameras", "visible", "infrared"):
        table.add_column(heading, justify="left" if heading == "set" else "right")
    for name, stats in result["sets"].items():
        table.add_row(name, f"{stats['images']:,}", str(stats["identities"]), str(stats["cameras"]),
                      f"{stats['visible']:,}", f"{stats['infrared']:,}")
    console().print(table)
