"""Market-1501 (Zheng et al., ICCV 2015): 1,501 persons, 6 cameras, one Market-style root.

```
Market-1501-v15.09.15/
  bounding_box_train/  0002_c1s1_000451_03.jpg    person 0002, camera 1, sequence 1, frame, box
  query/               0001_c1s1_001051_00.jpg
  bounding_box_test/   0000_... distractors (kept, never a match), -1_... junk boxes (dropped)
```
Persons 1-1501 (751 train, 750 test), cameras 1-6. CUHK03-NP uses the same three folders.
"""

from __future__ import annotations

import re
from pathlib import Path

from atzoo.data.layouts.base import CrossDataset, DatasetBuilder, Layout, check_range, check_root, read_flat_folders

NAME = "market1501"
PATTERN = re.compile(r"^(-1|\d{4})_c(\d)s(\d+)_(\d+)_(\d+)\.(?:jpg|jpeg|png)$", re.IGNORECASE)
HINT = "Market-1501 layout: bounding_box_train/, query/, bounding_box_test/ with PPPP_cCsS_FFFFFF_BB.jpg"
FOLDERS = (("train", "bounding_box_train"), ("query", "query"), ("gallery", "bounding_box_test"))
JUNK = -1
DISTRACTOR = 0


def read_market_folders(builder: DatasetBuilder, root: Path, prefix: str, *, max_person: int, max_camera: int,
                        hint: str) -> None:
    """The three Market-style folders under `root/prefix` into sets named `prefix + set`.

    Junk boxes (person -1) are dropped; distractors (person 0) are kept in the gallery only."""
    for set_name, folder_name in FOLDERS:
        lowest = DISTRACTOR if set_name == "gallery" else 1

        def labels(found: re.Match[str], path: Path, lowest: int = lowest) -> tuple[int, int, int] | None:
            person = int(found.group(1))
            if person == JUNK:
                return None
            return (check_range(person, lowest, max_person, "person id", path),
                    check_range(int(found.group(2)), 1, max_camera, "camera", path), 0)

        read_flat_folders(builder, root, [(prefix + set_name, prefix + folder_name)], PATTERN, hint, labels)


def read(root: str | Path) -> CrossDataset:
    root = check_root(root)
    builder = DatasetBuilder(NAME, root)
    read_market_folders(builder, root, "", max_person=1501, max_camera=6, hint=HINT)
    return builder.build(HINT)


LAYOUT = Layout(
    name=NAME, title="Market-1501", read=read, markers=("bounding_box_train", "bounding_box_test", "query"),
    description="1,501 persons, 6 visible cameras; junk boxes (-1) dropped, distractors (0000) kept",
    request="https://zheng-lab-anu.github.io/Project/project_reid.html (Liang Zheng's project page)",
)
