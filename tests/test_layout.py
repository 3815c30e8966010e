"""Reading an AT-USTC root into records: fields, order, and every way a root can be wrong."""

from __future__ import annotations

import re

import numpy as np
import pytest

from atzoo.data.layout import parse_root
from atzoo.errors import DataError
from atzoo.protocol import IR, RGB
from tests.atustc_tree import HAND_MADE, write_tree


def test_every_field_is_parsed_from_the_folder_and_file_name(tmp_path):
    records = parse_root(write_tree(tmp_path, ["p012-d03-c04/cam11-f5-0042.png"]))
    assert len(records) == 1
    assert records.root == tmp_path
    assert records.path.tolist() == ["p012-d03-c04/cam11-f5-0042.png"]
    assert (records.person[0], records.date[0], records.clothes[0]) == (12, 3, 4)
    assert (records.camera[0], records.modality[0], records.flag[0], records.frame[0]) == (11, IR, 5, 42)
    assert records.absolute_paths() == [tmp_path / "p012-d03-c04" / "cam11-f5-0042.png"]


def test_modality_follows_the_camera_rgb_1_to_8_ir_9_to_16(tmp_path):
    names = [f"p001-d01-c01/cam{camera:02d}-f0-0001.jpg" for camera in range(1, 17)]
    records = parse_root(write_tree(tmp_path, names))
    assert records.camera.tolist() == list(range(1, 17))
    assert records.modality.tolist() == [RGB] * 8 + [IR] * 8


def test_jpg_jpeg_png_in_any_case_are_read_and_other_files_ignored(tmp_path):
    names = ["p001-d01-c01/cam01-f0-0001.jpg", "p001-d01-c01/cam01-f0-0002.PNG",
             "p001-d01-c01/cam01-f0-0003.jpeg", "p001-d01-c01/cam01-f0-0004.JPG"]
    write_tree(tmp_path, names)
    (tmp_path / "p001-d01-c01" / "Thumbs.db").write_bytes(b"x")
    (tmp_path / "README.txt").write_text("AT-USTC")
    records = parse_root(tmp_path)
    assert records.frame.tolist() == [1, 2, 3, 4]


def test_records_are_sorted_by_folder_then_file_name(tmp_path):
    shuffled = list(reversed(HAND_MADE))
    records = parse_root(write_tree(tmp_path, shuffled))
    assert records.path.tolist() == sorted(HAND_MADE)
    assert records.path[0] == "p001-d01-c02/cam01-f0-0001.jpg"
    assert records.person.tolist() == sorted(records.person.tolist())


def test_subset_and_with_flags_keep_the_root_and_the_order(tmp_path):
    records = parse_root(write_tree(tmp_path))
    queries = records.with_flags((2, 4))
    assert queries.root == tmp_path
    assert queries.path.tolist() == ["p010-d01-c01/cam01-f2-0001.jpg", "p010-d01-c01/cam09-f4-0003.png",
                                     "p011-d01-c01/cam04-f2-0001.jpg", "p011-d01-c01/cam13-f4-0003.png"]
    picked = records.subset(np.array([3, 0]))
    assert picked.path.tolist() == [records.path[3], records.path[0]]


def test_a_missing_root_is_named(tmp_path):
    missing = tmp_path / "AT-USTC"
    with pytest.raises(DataError, match=f"dataset root {re.escape(str(missing))} does not exist"):
        parse_root(missing)


def test_a_root_that_is_a_file_is_named(tmp_path):
    file = tmp_path / "AT-USTC.zip"
    file.write_bytes(b"PK")
    with pytest.raises(DataError, match=f"{re.escape(str(file))} is not a directory"):
        parse_root(file)


def test_a_root_without_images_is_an_error(tmp_path):
    (tmp_path / "p001-d01-c01").mkdir()
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(DataError, match=f"no images found under {re.escape(str(tmp_path))}"):
        parse_root(tmp_path)


def test_a_root_one_level_too_high_suggests_the_real_one(tmp_path):
    write_tree(tmp_path / "AT-USTC", ["p001-d01-c01/cam01-f0-0001.jpg"])
    with pytest.raises(DataError, match=f"did you mean {re.escape(str(tmp_path / 'AT-USTC'))}"):
        parse_root(tmp_path)


def test_bad_names_are_counted_and_the_first_few_listed(tmp_path):
    bad = [f"p001-d01-c01/img{i}.jpg" for i in range(7)] + ["person1/cam01-f0-0001.jpg", "loose.png"]
    write_tree(tmp_path, ["p001-d01-c01/cam01-f0-0001.jpg", *bad])
    with pytest.raises(DataError) as raised:
        parse_root(tmp_path)
    message = str(raised.value)
    assert message.startswith(f"9 image file(s) under {tmp_path} do not match the AT-USTC layout")
    assert "first: loose.png, p001-d01-c01/img0.jpg, p001-d01-c01/img1.jpg, p001-d01-c01/img2.jpg, " \
           "p001-d01-c01/img3.jpg (use --skip-bad-names" in message
    assert "img5" not in message


def test_skip_bad_names_warns_and_keeps_the_good_ones(tmp_path):
    write_tree(tmp_path, ["p001-d01-c01/cam01-f0-0001.jpg", "p001-d01-c01/cam1-f0.jpg", "p1-d1/cam01-f0-0001.jpg"])
    with pytest.warns(UserWarning, match=r"2 image file\(s\) .* first: p001-d01-c01/cam1-f0.jpg, "
                                         r"p1-d1/cam01-f0-0001.jpg; skipped"):
        records = parse_root(tmp_path, skip_bad_names=True)
    assert records.path.tolist() == ["p001-d01-c01/cam01-f0-0001.jpg"]


def test_skipping_every_name_leaves_no_images(tmp_path):
    write_tree(tmp_path, ["p001-d01-c01/frame.jpg"])
    with pytest.warns(UserWarning), pytest.raises(DataError, match="no images found"):
        parse_root(tmp_path, skip_bad_names=True)


@pytest.mark.parametrize("camera", [0, 17])
def test_a_camera_outside_1_to_16_is_named_with_its_value_and_path(tmp_path, camera):
    name = f"p001-d01-c01/cam{camera:02d}-f0-0001.jpg"
    write_tree(tmp_path, ["p001-d01-c01/cam01-f0-0002.jpg", name])
    with pytest.raises(DataError) as raised:
        parse_root(tmp_path)
    assert str(raised.value) == (f"1 image(s) under {tmp_path} have a camera outside 1-16 "
                                 f"(found camera {camera}; e.g. {name})")


def test_a_flag_outside_0_to_10_is_named_with_its_values_and_paths(tmp_path):
    names = ["p001-d01-c01/cam01-f11-0001.jpg", "p001-d01-c01/cam01-f12-0002.jpg", "p001-d01-c01/cam01-f10-0003.jpg"]
    write_tree(tmp_path, names)
    with pytest.raises(DataError, match=r"2 image\(s\) under .* have a flag outside 0-10 \(found flag 11, 12; "
                                        r"e\.g\. p001-d01-c01/cam01-f11-0001\.jpg, p001-d01-c01/cam01-f12-0002\.jpg\)"):
        parse_root(tmp_path)
