"""SYSU-MM01 (Wu et al., ICCV 2017): visible-infrared, 491 persons, 6 cameras.

```
SYSU-MM01/
  cam1/0001/0001.jpg ... cam6/...     camera folder / 4-digit person / image
  exp/train_id.txt  exp/val_id.txt  exp/test_id.txt    person ids, comma-separated on one line
```
Cameras 1, 2, 4, 5 are visible, 3 and 6 infrared; 1-3 indoor, 4-6 outdoor. Camera 3 (infrared)
and camera 2 (visible) film the same room. Sets: `train` (train and val ids, all cameras),
`query` (test ids, infrared cameras 3 and 6), `gallery` (test ids, visible cameras 1, 2, 4, 5).
"""

from __future__ import annotations

import re
from pathlib import Path

from atzoo.data.layouts.base import (INFRARED, VISIBLE, CrossDataset, DatasetBuilder, Layout, check_range,
                                     check_root, image_names, match_name, read_id_list, require_dir, require_file,
                                     sub_folders)
from atzoo.errors import DataError

NAME = "sysu-mm01"
VISIBLE_CAMERAS = (1, 2, 4, 5)
INFRARED_CAMERAS = (3, 6)
INDOOR_CAMERAS = (1, 2, 3)
PERSON_FOLDER = re.compile(r"^\d{4}$")
IMAGE = re.compile(r"^\d{4}\.(?:jpg|jpeg|png)$", re.IGNORECASE)
HINT = ("SYSU-MM01 layout: cam1/ ... cam6/ holding 4-digit person folders of NNNN.jpg images, and "
        "exp/train_id.txt, exp/val_id.txt, exp/test_id.txt")


def _ids(root: Path, name: str) -> set[int]:
    path = require_file(root, f"exp/{name}", HINT + "; the exp/ id lists ship with the dataset")
    return {check_range(i, 1, 533, "person id", path) for i in read_id_list(path)}


def read(root: str | Path) -> CrossDataset:
    root = check_root(root)
    if not (root / "exp").is_dir():
        raise DataError(f"{root} has no exp/ folder: SYSU-MM01's split is defined by exp/train_id.txt, "
                        "exp/val_id.txt and exp/test_id.txt, which ship with the dataset; copy them there")
    train_ids = _ids(root, "train_id.txt") | _ids(root, "val_id.txt")
    test_ids = _ids(root, "test_id.txt")
    overlap = train_ids & test_ids
    if overlap:
        raise DataError(f"{root / 'exp'}: person(s) {sorted(overlap)[:5]} are listed for both training and test")
    builder = DatasetBuilder(NAME, root)
    for set_name in ("train", "query", "gallery"):
        builder.declare(set_name)
    for camera in VISIBLE_CAMERAS + INFRARED_CAMERAS:
        camera_folder = require_dir(root, f"cam{camera}", HINT)
        modality = INFRARED if camera in INFRARED_CAMERAS else VISIBLE
        for person_name in sub_folders(camera_folder):
            if not PERSON_FOLDER.match(person_name):
                raise DataError(f"{camera_folder / person_name} is not a 4-digit person folder ({HINT})")
            person = int(person_name)
            if person in test_ids:
                set_name = "query" if modality == INFRARED else "gallery"
            elif person in train_ids:
                set_name = "train"
            else:
                continue
            folder = camera_folder / person_name
            for name in image_names(folder):
                match_name(IMAGE, name, folder, HINT)
                builder.add(set_name, f"cam{camera}/{person_name}/{name}", person, camera, modality)
    return builder.build(HINT)


LAYOUT = Layout(
    name=NAME, title="SYSU-MM01", read=read, markers=("cam1", "cam3", "cam6"),
    description="visible-infrared, 491 persons, 4 visible and 2 infrared cameras, indoor and outdoor",
    request="https://github.com/wuancong/SYSU-MM01 (agreement form to the authors)",
)
