"""LLCM (Zhang and Wang, CVPR 2023): low-light visible-infrared, 1,064 persons, 9 cameras.

```
LLCM/
  test_vis/cam1/0001/IMAGE.jpg ... cam9/     visible test images: camera / 4-digit person / image
  test_nir/cam1/... (no cam3)                near-infrared test images
  idx/test_id.txt                            test person ids, comma-separated
  vis/0001/0001_c01_s185535_f7010_vis.jpg    training images: person / person_camera_..., listed in
  idx/train_vis.txt  idx/train_nir.txt       lines "vis/0001/0001_c01_... .jpg LABEL" (nir/ alike)
```
Each camera records both modalities (visible by day, near-infrared at night), so a camera number
names the same place in both; camera 3 has no near-infrared images.
"""

from __future__ import annotations

import re
from pathlib import Path

from atzoo.data.layouts.base import (INFRARED, VISIBLE, CrossDataset, DatasetBuilder, Layout, check_range,
                                     check_root, existing_files, image_names, read_id_list, read_list_file,
                                     require_dir, require_file, sub_folders)
from atzoo.errors import DataError

NAME = "llcm"
TEST_FOLDERS = (("test-visible", "test_vis", VISIBLE), ("test-infrared", "test_nir", INFRARED))
CAMERA_FOLDER = re.compile(r"^cam(\d+)$")
PERSON_FOLDER = re.compile(r"^\d{4}$")
TRAIN_ENTRY = re.compile(r"^(vis|nir)/(\d{4})/(\d{4})_c(\d+)_[^/]*\.(?:jpg|jpeg|png)$", re.IGNORECASE)
HINT = ("LLCM layout: test_vis/camC/PPPP/*.jpg, test_nir/camC/PPPP/*.jpg, idx/test_id.txt, "
        "idx/train_vis.txt and idx/train_nir.txt listing vis/PPPP/ and nir/PPPP/ images")


def _read_train(root: Path, builder: DatasetBuilder) -> None:
    builder.declare("train")
    for list_name in ("train_vis.txt", "train_nir.txt"):
        list_path = require_file(root, f"idx/{list_name}", HINT)
        entries = read_list_file(list_path)
        top = {entry.split("/")[0] for entry, _ in entries}
        files: set[str] = set().union(*(existing_files(root, folder) for folder in top if (root / folder).is_dir()))
        for number, (entry, _label) in enumerate(entries, start=1):
            where = Path(f"{list_path} line {number}")
            found = TRAIN_ENTRY.match(entry)
            if found is None or found.group(2) != found.group(3):
                raise DataError(f"{where}: {entry!r} is not a vis/PPPP/PPPP_cCC_*.jpg or nir/PPPP/PPPP_cCC_*.jpg "
                                f"image ({HINT})")
            if entry not in files:
                raise DataError(f"{where}: {root / entry} does not exist")
            modality = VISIBLE if found.group(1).lower() == "vis" else INFRARED
            person = check_range(int(found.group(2)), 1, 1064, "person id", where)
            camera = check_range(int(found.group(4)), 1, 9, "camera", where)
            builder.add("train", entry, person, camera, modality)


def read(root: str | Path) -> CrossDataset:
    root = check_root(root)
    id_file = require_file(root, "idx/test_id.txt", HINT)
    test_ids = {check_range(i, 1, 1064, "person id", id_file) for i in read_id_list(id_file)}
    builder = DatasetBuilder(NAME, root)
    for set_name, folder_name, modality in TEST_FOLDERS:
        folder = require_dir(root, folder_name, HINT)
        builder.declare(set_name)
        for camera_name in sub_folders(folder):
            found = CAMERA_FOLDER.match(camera_name)
            if found is None:
                raise DataError(f"{folder / camera_name} is not a camera folder camN ({HINT})")
            camera = check_range(int(found.group(1)), 1, 9, "camera", folder / camera_name)
            for person_name in sub_folders(folder / camera_name):
                if not PERSON_FOLDER.match(person_name):
                    raise DataError(f"{folder / camera_name / person_name} is not a 4-digit person folder ({HINT})")
                person = int(person_name)
                if person not in test_ids:
                    continue
                images = folder / camera_name / person_name
                for name in image_names(images):
                    builder.add(set_name, f"{folder_name}/{camera_name}/{person_name}/{name}", person, camera,
                                modality)
    _read_train(root, builder)
    return builder.build(HINT)


LAYOUT = Layout(
    name=NAME, title="LLCM", read=read, markers=("test_vis", "test_nir"),
    description="low-light visible-infrared, 1,064 persons, 9 cameras recording both modalities",
    request="https://github.com/ZYK100/LLCM (agreement form to the authors)",
)
