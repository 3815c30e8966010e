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

from atzoo.data.layouts.base import CrossDataset, DatasetBuilder, Layout, check_range, check_root, read_flat_folders

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

    def labels(found: re.Match[str], path: Path) -> tuple[int, int, int]:
        tracklet = tracklets.setdefault((int(found.group(3)), int(found.group(4))), len(tracklets) + 1)
        return (check_range(int(found.group(1)), 0, 1120, "person id", path),
                check_range(int(found.group(2)), 1, 17, "camera", path), tracklet)

    read_flat_folders(builder, root, FOLDERS, PATTERN, HINT, labels)
    return builder.build(HINT)


LAYOUT = Layout(
    name=NAME, title="DeepChange", read=read, markers=("test-set-query", "test-set-gallery"),
    description="long-term, 1,121 persons, 17 cameras over 12 months; tracklets stand in for outfits",
    request="https://github.com/PengBoXiangShang/deepchange (agreement form to the authors)",
)
