"""Loading dataset images: RGB out, and a `DataError` naming the file for anything unusable."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from atzoo.data.images import load_image
from atzoo.errors import DataError
from tests.atustc_tree import image_bytes


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_a_colour_image_loads_as_rgb_with_its_size(tmp_path, suffix):
    path = tmp_path / f"cam01-f0-0001{suffix}"
    path.write_bytes(image_bytes(suffix, (8, 16)))
    image = load_image(path)
    assert image.mode == "RGB"
    assert image.size == (8, 16)


def test_a_png_pixel_values_survive_loading(tmp_path):
    pixels = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(6, 4, 3)
    path = tmp_path / "cam09-f0-0001.png"
    Image.fromarray(pixels).save(path)
    assert np.array_equal(np.asarray(load_image(path)), pixels)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_other_modes_are_converted_to_rgb(tmp_path, mode):
    path = tmp_path / "cam10-f0-0001.png"
    Image.new(mode, (5, 7)).save(path)
    image = load_image(path)
    assert (image.mode, image.size) == ("RGB", (5, 7))


def test_a_missing_file_is_named(tmp_path):
    path = tmp_path / "p001-d01-c01" / "cam01-f0-0001.jpg"
    with pytest.raises(DataError, match=f"image {re.escape(str(path))} does not exist"):
        load_image(path)


def test_a_folder_is_not_an_image(tmp_path):
    with pytest.raises(DataError, match=f"image {re.escape(str(tmp_path))} is not a file"):
        load_image(tmp_path)


def test_an_empty_file_is_named(tmp_path):
    path = tmp_path / "cam01-f0-0001.jpg"
    path.write_bytes(b"")
    with pytest.raises(DataError, match=f"image {re.escape(str(path))} is empty"):
        load_image(path)


def test_a_text_file_named_jpg_is_not_an_image(tmp_path):
    path = tmp_path / "cam01-f0-0001.jpg"
    path.write_text("this is not a picture\n")
    with pytest.raises(DataError, match=f"{re.escape(str(path))} is not an image"):
        load_image(path)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_a_truncated_file_is_named(tmp_path, suffix):
    whole = image_bytes(suffix, (64, 128))
    path = tmp_path / f"cam01-f0-0001{suffix}"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=f"image {re.escape(str(path))} cannot be decoded; it is truncated"):
        load_image(path)
