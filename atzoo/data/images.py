"""Loading one dataset image, with a clear error for a file that cannot be used.

AT-USTC stores infrared images as 3-channel files too, so every image is returned as RGB.
A damaged file stops the data pipeline with a `DataError` naming it, never a bare PIL traceback.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from collections.abc import Callable

from PIL import Image

from atzoo.errors import AtzooError, DataError

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, zlib.error, Image.DecompressionBombError)


def load_image(path: str | os.PathLike) -> Image.Image:
    """Read `path` fully and return it as an RGB image.

    Raises `DataError` naming the path when the file is missing, not a regular file, empty,
    truncated or not an image PIL can decode.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"image {path} does not exist")
    if not path.is_file():
        raise DataError(f"image {path} is not a file")
    if path.stat().st_size == 0:
        raise DataError(f"image {path} is empty (0 bytes)")
    return decode_image(path, str(path))


def decode_image(path: Path, label: str, *, error: type[AtzooError] = DataError,
                 check_size: Callable[[int, int], None] | None = None) -> Image.Image:
    """Decode `path` as RGB; `label` names it in errors (of class `error`). `check_size(width,
    height)` runs on the header before any pixel is decoded, so an oversized image is refused cheaply."""
    try:
        with Image.open(path) as image:
            if check_size is not None:
                check_size(*image.size)
            image.load()
            return image.convert("RGB")
    except Image.UnidentifiedImageError:
        raise error(f"{label} is not an image (PIL cannot identify its format; expected JPEG, PNG or "
                    f"another image file)") from None
    except _DECODE_ERRORS as decode_error:
        raise error(f"image {label} cannot be decoded; it is truncated or damaged ({decode_error})") from None
