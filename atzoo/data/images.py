"""Loading one dataset image, with a clear error for a file that cannot be used.

AT-USTC stores infrared images as 3-channel files too, so every image is returned as RGB.
A damaged file stops the data pipeline with a `DataError` naming it, never a bare PIL traceback.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

from PIL import Image

from atzoo.errors import DataError

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
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except Image.UnidentifiedImageError:
        raise DataError(f"{path} is not an image (PIL cannot identify its format)") from None
    except _DECODE_ERRORS as error:
        raise DataError(f"image {path} cannot be decoded; it is truncated or damaged ({error})") from None
