"""DeepChange (Xu and Zhu, 2021): long-term re-id over 12 months, 1,121 persons, 17 cameras.

```
DeepChange/
  train-set/  val-set-query/  val-set-gallery/  test-set-query/  test-set-gallery/
    P0702_C13_20200813_154757_000038_bbox.jpg   person, camera, date, time, frame
```
Clothes are not labelled. A tracklet (one date and time) stands in for an outfit, as in the
benchmark authors' script: `clothes` numbers the (date, time) pairs.
"""

from __future__ import annotations

import re
from pathlib import Path

from atzoo.data.layouts.base import (VISIBLE, CrossDataset, DatasetBuilder, Layout, check_range, check_root,
                                     image_names, match_name, require_dir)

NAME = "deepchange"
PATTERN = re.compile(r"^P(\d+)_C(\d+)_(\d{8})_(\d{6})_(\d+)(?:_bbox)?\.(?:jpg|jpeg|png)$", re.IGNORECASE)
HINT = ("DeepChange layout: train-set/, val-set-query/, val-set-gallery/, test-set-query/, test-set-gallery/ "
        "holding PPPPP_CCC_DATE_TIME_FRAME_bbox.jpg")
FOLDERS = (("train", "train-set"), ("val-query", "val-set-query"), ("val-gallery", "val-set-gallery"),
           ("query", "test-set-query"), ("gallery", "test-set-gallery"))


def read(root: str | Path) -> CrossDataset:
    root = check_root(root)
    builder = DatasetBuilder(NAME, root)
    tracklets: dict[tuple[int, int], int] = {}
    for set_name, folder_name in FOLDERS:
        folder = require_dir(root, folder_name, HINT)
        builder.declare(set_name)
        for name in image_names(folder):
            found = match_name(PATTERN, name, folder, HINT)
            person = check_range(int(found.group(1)), 0, 1120, "person id", folder / name)
            camera = check_range(int(found.group(2)), 1, 17, "camera", folder / name)
            tracklet = tracklets.setdefault((int(found.group(3)), int(found.group(4))), len(tracklets) + 1)
            builder.add(set_name, f"{folder_name}/{name}", person, camera, VISIBLE, tracklet)
    return builder.build(HINT)


LAYOUT = Layout(
    name=NAME, title="DeepChange", read=read, markers=("test-set-query", "test-set-gallery"),
    description="long-term, 1,121 persons, 17 cameras over 12 months; tracklets stand in for outfits",
    request="https://github.com/PengBoXiangShang/deepchange (agreement form to the authors)",
)
