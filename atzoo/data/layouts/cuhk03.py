"""CUHK03 in the 767/700 "new protocol" split (Zhong et al., CVPR 2017: CUHK03-NP).

```
cuhk03-np/
  detected/  bounding_box_train/ query/ bounding_box_test/   0001_c1_1.png  (person, camera 1-2, image)
  labeled/   the same three folders, hand-drawn boxes
```
1,467 persons (767 train, 700 test), 2 cameras per person pair. A root may hold either box kind
or both; each present kind is its own evaluation setting.
"""

from __future__ import annotations

import re
from pathlib import Path

from atzoo.data.layouts.base import CrossDataset, DatasetBuilder, Layout, check_range, check_root, read_flat_folders
from atzoo.data.layouts.market1501 import FOLDERS
from atzoo.errors import DataError

NAME = "cuhk03"
BOX_KINDS = ("detected", "labeled")
PATTERN = re.compile(r"^(\d{4})_c(\d)_(\d+)\.(?:png|jpg|jpeg)$", re.IGNORECASE)
HINT = ("CUHK03-NP layout: detected/ and/or labeled/, each with bounding_box_train/, query/, "
        "bounding_box_test/ holding PPPP_cC_N.png")


def present_kinds(root: Path) -> list[str]:
    return [kind for kind in BOX_KINDS if (root / kind).is_dir()]


def _labels(found: re.Match[str], path: Path) -> tuple[int, int, int]:
    return (check_range(int(found.group(1)), 1, 1467, "person id", path),
            check_range(int(found.group(2)), 1, 2, "camera", path), 0)


def read(root: str | Path) -> CrossDataset:
    root = check_root(root)
    kinds = present_kinds(root)
    if not kinds:
        raise DataError(f"{root} has neither detected/ nor labeled/ ({HINT})")
    builder = DatasetBuilder(NAME, root)
    folders = [(f"{kind}/{set_name}", f"{kind}/{folder_name}") for kind in kinds for set_name, folder_name in FOLDERS]
    read_flat_folders(builder, root, folders, PATTERN, HINT, _labels)
    return builder.build(HINT)


LAYOUT = Layout(
    name=NAME, title="CUHK03", read=read, markers=(), any_markers=("detected/bounding_box_test",
                                                                     "labeled/bounding_box_test"),
    description="CUHK03-NP (767/700 split), detected and labeled boxes, 2 cameras per person",
    request="https://github.com/zhunzhong07/person-re-ranking (CUHK03-NP; the original from CUHK)",
)
