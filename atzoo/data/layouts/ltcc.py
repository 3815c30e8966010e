"""LTCC (Qian et al., ACCV 2020): long-term clothes-changing, 152 persons, 12 cameras.

```
LTCC_ReID/
  train/  query/  test/     PPP_C_cCC_FFFFFF.png: person, clothes (per person), camera, frame
  info/                     id lists (not needed by the protocol)
```
`test/` is the gallery.
"""

from __future__ import annotations

import re
from pathlib import Path

from atzoo.data.layouts.base import CrossDataset, DatasetBuilder, Layout, check_range, check_root, read_flat_folders

NAME = "ltcc"
PATTERN = re.compile(r"^(\d{3})_(\d+)_c(\d+)_(\d+)\.(?:png|jpg|jpeg)$", re.IGNORECASE)
HINT = "LTCC layout: train/, query/, test/ holding PPP_C_cCC_FFFFFF.png (person, clothes, camera, frame)"
FOLDERS = (("train", "train"), ("query", "query"), ("gallery", "test"))


def _labels(found: re.Match[str], path: Path) -> tuple[int, int, int]:
    return (check_range(int(found.group(1)), 0, 151, "person id", path),
            check_range(int(found.group(3)), 1, 12, "camera", path),
            check_range(int(found.group(2)), 1, 99, "clothes id", path))


def read(root: str | Path) -> CrossDataset:
    root = check_root(root)
    builder = DatasetBuilder(NAME, root)
    read_flat_folders(builder, root, FOLDERS, PATTERN, HINT, _labels)
    return builder.build(HINT)


LAYOUT = Layout(
    name=NAME, title="LTCC", read=read, markers=("train", "query", "test"),
    description="long-term clothes-changing, 152 persons, 12 cameras, clothes labelled per person",
    request="https://naiq.github.io/LTCC_Perosn_ReID.html (agreement form to the authors)",
)
