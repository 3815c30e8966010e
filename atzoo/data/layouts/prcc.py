"""PRCC (Yang et al., TPAMI 2019): clothes-changing, 221 persons, 3 cameras.

```
prcc/rgb/
  train/001/A_cropped_rgb001.jpg    person folder / camera letter _cropped_rgb N
  val/...                           (same; added to training)
  test/A/001/cropped_rgb001.jpg     camera folder / person / image
```
Cameras A and B see a person in the same clothes, camera C in other clothes: camera A is 1,
B 2, C 3; clothes 1 for A and B, 2 for C. Test sets: `gallery` (A), `query-same` (B),
`query-changed` (C).
"""

from __future__ import annotations

import re
from pathlib import Path

from atzoo.data.layouts.base import (VISIBLE, CrossDataset, DatasetBuilder, Layout, check_range, check_root,
                                     image_names, match_name, require_dir, sub_folders)
from atzoo.errors import DataError

NAME = "prcc"
CAMERAS = {"A": 1, "B": 2, "C": 3}
CLOTHES = {"A": 1, "B": 1, "C": 2}
TEST_SETS = {"A": "gallery", "B": "query-same", "C": "query-changed"}
PERSON_FOLDER = re.compile(r"^\d{3}$")
TRAIN_IMAGE = re.compile(r"^([ABC])_cropped_rgb\d+\.(?:jpg|jpeg|png)$", re.IGNORECASE)
TEST_IMAGE = re.compile(r"^cropped_rgb\d+\.(?:jpg|jpeg|png)$", re.IGNORECASE)
HINT = ("PRCC layout: rgb/train/PPP/{A,B,C}_cropped_rgbN.jpg, rgb/val/ the same, "
        "rgb/test/{A,B,C}/PPP/cropped_rgbN.jpg")


def _person(folder: Path, name: str) -> int:
    if not PERSON_FOLDER.match(name):
        raise DataError(f"{folder / name} is not a 3-digit person folder ({HINT})")
    return check_range(int(name), 1, 221, "person id", folder / name)


def read(root: str | Path) -> CrossDataset:
    root = check_root(root)
    builder = DatasetBuilder(NAME, root)
    builder.declare("train")
    for part in ("train", "val"):
        part_folder = require_dir(root, f"rgb/{part}", HINT)
        for person_name in sub_folders(part_folder):
            person = _person(part_folder, person_name)
            for name in image_names(part_folder / person_name):
                letter = match_name(TRAIN_IMAGE, name, part_folder / person_name, HINT).group(1).upper()
                builder.add("train", f"rgb/{part}/{person_name}/{name}", person, CAMERAS[letter], VISIBLE,
                            CLOTHES[letter])
    for letter, set_name in TEST_SETS.items():
        camera_folder = require_dir(root, f"rgb/test/{letter}", HINT)
        builder.declare(set_name)
        for person_name in sub_folders(camera_folder):
            person = _person(camera_folder, person_name)
            for name in image_names(camera_folder / person_name):
                match_name(TEST_IMAGE, name, camera_folder / person_name, HINT)
                builder.add(set_name, f"rgb/test/{letter}/{person_name}/{name}", person, CAMERAS[letter], VISIBLE,
                            CLOTHES[letter])
    return builder.build(HINT)


LAYOUT = Layout(
    name=NAME, title="PRCC", read=read, markers=("rgb/test",),
    description="clothes-changing, 221 persons, cameras A/B same clothes, camera C other clothes",
    request="https://www.isee-ai.cn/~yangqize/clothing.html (agreement form to the authors)",
)
