"""Small AT-USTC-format trees for the data layer's tests: only the file names matter for parsing."""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

# A hand-made root. Train: persons 1, 3, 7 (person 7 is IR-only); the folder order puts person 1's
# clothing 2 before its clothing 1. Validation: two images. Test: persons 10 and 11, one image per
# query/gallery flag, person 11 without NT-LT images, person 10 with one unused (flag 10) image.
HAND_MADE = (
    "p001-d01-c02/cam01-f0-0001.jpg",
    "p001-d01-c02/cam10-f0-0001.jpg",
    "p001-d01-c02/cam02-f1-0002.jpg",
    "p001-d03-c01/cam03-f0-0005.png",
    "p003-d01-c01/cam01-f0-0001.jpg",
    "p003-d01-c01/cam09-f0-0002.png",
    "p003-d01-c01/cam09-f1-0003.jpg",
    "p003-d02-c02/cam02-f0-0003.jpg",
    "p007-d01-c01/cam11-f0-0001.jpg",
    "p010-d01-c01/cam01-f2-0001.jpg",
    "p010-d01-c01/cam02-f6-0002.jpg",
    "p010-d01-c01/cam09-f4-0003.png",
    "p010-d01-c01/cam10-f8-0004.png",
    "p010-d01-c01/cam03-f10-0005.jpg",
    "p010-d02-c02/cam01-f3-0006.jpg",
    "p010-d02-c02/cam02-f7-0007.jpg",
    "p010-d02-c02/cam09-f5-0008.jpg",
    "p010-d02-c02/cam12-f9-0009.jpg",
    "p011-d01-c01/cam04-f2-0001.jpg",
    "p011-d01-c01/cam05-f6-0002.jpg",
    "p011-d01-c01/cam13-f4-0003.png",
    "p011-d01-c01/cam14-f8-0004.png",
    "p011-d03-c02/cam04-f3-0005.jpg",
    "p011-d03-c02/cam06-f7-0006.jpg",
)


@cache
def image_bytes(suffix: str, size: tuple[int, int] = (8, 16)) -> bytes:
    """A small noisy image encoded as JPEG or PNG."""
    pixels = np.random.default_rng(0).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG" if suffix.lower() == ".png" else "JPEG")
    return buffer.getvalue()


def write_tree(root: Path, relative_paths: tuple[str, ...] | list[str] = HAND_MADE) -> Path:
    """Write a tiny image at each relative path under `root` and return `root`."""
    for relative in relative_paths:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image_bytes(path.suffix))
    return root
