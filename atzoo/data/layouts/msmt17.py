"""MSMT17 (Wei et al., CVPR 2018): 4,101 persons, 15 cameras, read through its list files.

```
MSMT17_V1/
  train/0000/0000_000_01_0303morning_0015_0.jpg   person folder / person_index_camera_time_frame_n
  test/...
  list_train.txt  list_val.txt  list_query.txt  list_gallery.txt    lines "0000/0000_..._0.jpg 0"
```
Train and val list files index `train/`, query and gallery `test/`. Train and test person ids
both start at 0 and name different persons; only test persons are compared here. The label
column must equal the person folder.
"""

from __future__ import annotations

import re
from pathlib import Path

from atzoo.data.layouts.base import (VISIBLE, CrossDataset, DatasetBuilder, Layout, check_range, check_root,
                                     existing_files, read_list_file, require_dir, require_file)
from atzoo.errors import DataError

NAME = "msmt17"
PATTERN = re.compile(r"^(\d+)/(\d+)_(\d+)_(\d+)_[^/]+\.(?:jpg|jpeg|png)$", re.IGNORECASE)
HINT = ("MSMT17 layout: train/, test/ and list_train.txt, list_val.txt, list_query.txt, list_gallery.txt "
        "with lines 'PPPP/PPPP_III_CC_TIME_FFFF_N.jpg LABEL'")
LISTS = (("train", "list_train.txt", "train"), ("train", "list_val.txt", "train"),
         ("query", "list_query.txt", "test"), ("gallery", "list_gallery.txt", "test"))
TEST_PERSON_OFFSET = 10_000
"""Train persons keep their id, test persons get this added: the two id ranges name different people."""


def read(root: str | Path) -> CrossDataset:
    root = check_root(root)
    for folder in ("train", "test"):
        require_dir(root, folder, HINT)
    files = existing_files(root, "train") | existing_files(root, "test")
    builder = DatasetBuilder(NAME, root)
    for set_name, list_name, folder in LISTS:
        list_path = require_file(root, list_name, HINT)
        builder.declare(set_name)
        for number, (entry, label) in enumerate(read_list_file(list_path), start=1):
            where = Path(f"{list_path} line {number}")
            found = PATTERN.match(entry)
            if found is None or found.group(1) != found.group(2):
                raise DataError(f"{where}: {entry!r} does not follow the naming scheme ({HINT})")
            person = check_range(int(found.group(1)), 0, 4100, "person id", where)
            if label != person:
                raise DataError(f"{where}: label {label} differs from the person folder {found.group(1)}")
            camera = check_range(int(found.group(4)), 1, 15, "camera", where)
            relative = f"{folder}/{entry}"
            if relative not in files:
                raise DataError(f"{where}: {root / relative} does not exist")
            offset = TEST_PERSON_OFFSET if folder == "test" else 0
            builder.add(set_name, relative, person + offset, camera, VISIBLE)
    return builder.build(HINT)


LAYOUT = Layout(
    name=NAME, title="MSMT17", read=read, markers=("list_query.txt", "list_gallery.txt", "test"),
    description="4,101 persons, 15 visible cameras, indoor and outdoor, read through its list files",
    request="https://www.pkuvmc.com/dataset.html (request form of Peking University's VMC lab)",
)
