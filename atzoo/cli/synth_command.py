"""`atzoo synth`: write a synthetic dataset in the AT-USTC layout."""

from __future__ import annotations

import re
from pathlib import Path

import click

from atzoo.errors import AtzooError

SIZE_PATTERN = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")
PRESETS = ("default", "tiny")


class SynthUserError(click.ClickException):
    """An `AtzooError` shown as one line with exit status 2, also when the command is invoked directly."""

    exit_code = 2


def parse_size(text: str) -> tuple[int, int]:
    """'128x64' -> (128, 64): height x width in pixels."""
    match = SIZE_PATTERN.match(text)
    if match is None:
        raise click.BadParameter(f"{text!r} is not a size: expected HEIGHTxWIDTH in pixels, e.g. 128x64",
                                 param_hint="'--size'")
    return int(match.group(1)), int(match.group(2))


def _size_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    return None if value is None else parse_size(value)


@click.command()
@click.argument("root", type=click.Path(path_type=Path, file_okay=False))
@click.option("--preset", type=click.Choice(PRESETS), default="default", show_default=True,
              help="Starting settings: 'default' (80 persons, 128x64) or 'tiny' (10 persons, 32x16, for tests). "
                   "The options below override it.")
@click.option("--ids", type=int, help="Persons in total, split 1:1 into train and test (even, >= 4).")
@click.option("--seed", type=int, help="Random seed: the same settings and seed give the same bytes.")
@click.option("--size", callback=_size_callback, metavar="HxW", help="Image height x width in pixels, e.g. 128x64.")
@click.option("--clothings", type=int, help="Capture dates per person, one clothing each (2-13).")
@click.option("--rgb-cameras", type=int, help="RGB cameras (of 8) that see each person in each clothing.")
@click.option("--ir-cameras", type=int, help="Infrared cameras (of 8) that see each person in each clothing.")
@click.option("--frames", type=int, help="Images per clip, i.e. per person, clothing and camera (>= 12).")
@click.option("--val-share", type=float, help="Share of the training persons' images held out as validation.")
@click.option("--png-share", type=float, help="Share of images written as .png instead of .jpg.")
@click.option("--overwrite", is_flag=True, help="Replace ROOT if it already holds a synthetic dataset.")
@click.option("--workers", type=click.IntRange(min=1), help="Writer processes (default: 1 for small datasets, "
              "else every core).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--layout", default="at-ustc", show_default=True, metavar="NAME",
              help="Write a small dataset in a public layout instead: market1501, cuhk03, msmt17, sysu-mm01, "
                   "regdb, llcm, prcc, ltcc, deepchange or vc-clothes (uses --preset's image size, --size, --seed).")
def synth(root: Path, preset: str, ids: int | None, seed: int | None, size: tuple[int, int] | None,
          clothings: int | None, rgb_cameras: int | None, ir_cameras: int | None, frames: int | None,
          val_share: float | None, png_share: float | None, overwrite: bool, workers: int | None,
          quiet: bool, layout: str) -> None:
    """Generate a synthetic dataset in the AT-USTC layout under ROOT.

    Procedurally drawn persons (never real data), with the benchmark's folder and file names, RGB
    and infrared cameras, several clothings per person and the official split flags, so every
    command that reads AT-USTC runs on it. Deterministic for a given seed and settings.
    """
    from atzoo.cli.output import elapsed
    from atzoo.data.synthetic import DEFAULT, TINY, generate, with_overrides

    if layout.lower() != "at-ustc":
        _synth_layout(root, layout, preset, seed, size, overwrite)
        return
    base = {"default": DEFAULT, "tiny": TINY}[preset]
    with elapsed("atzoo synth"):
        try:
            config = with_overrides(base, ids=ids, seed=seed, size=size, clothings=clothings, rgb_cameras=rgb_cameras,
                                    ir_cameras=ir_cameras, frames=frames, val_share=val_share, png_share=png_share)
            path = generate(root, config, overwrite=overwrite, progress=not quiet, workers=workers)
        except AtzooError as error:
            raise SynthUserError(str(error)) from None
        height, width = config.size
        click.echo(f"Wrote {config.num_images:,} images of {config.ids} identities ({height}x{width}, "
                   f"seed {config.seed}) to {path}")


def _synth_layout(root: Path, layout: str, preset: str, seed: int | None, size: tuple[int, int] | None,
                  overwrite: bool) -> None:
    from atzoo.data.layouts import get_layout, read_layout
    from atzoo.data.synthetic import with_overrides
    from atzoo.data.synthetic_layouts import PRESETS, generate_layout

    try:
        name = get_layout(layout).name
        config = with_overrides(PRESETS[preset], seed=seed, size=size)
        path = generate_layout(root, name, config, overwrite=overwrite)
        images = len(read_layout(path, name))
    except AtzooError as error:
        raise SynthUserError(str(error)) from None
    height, width = config.size
    click.echo(f"Wrote a synthetic {name} dataset of {images:,} images ({height}x{width}, seed {config.seed}) to {path}")
