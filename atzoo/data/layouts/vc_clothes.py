"""VC-Clothes (Wan et al., CVPR-W 2020): synthetic clothes-changing data, 512 persons, 4 cameras.

```
VC-Clothes/
  train/  query/  gallery/     PPPP-CC-LL-NN.jpg: person, camera, clothes (per person), image
```
Cameras 2 and 3 see a person in the same clothes; cameras 3 and 4 in different ones.
"""

from __future__ import annotations

import re
from pathlib import Path

from atzoo.data.layouts.base import CrossDataset, DatasetBuilder, Layout, check_range, check_root, read_flat_folders

NAME = "vc-clothes"
PATTERN = re.compile(r"^(\d{4})-(\d{2})-(\d{2})-(\d+)\.(?:jpg|jpeg|png)$", re.IGNORECASE)
HINT = "VC-Clothes layout: train/, query/, gallery/ holding PPPP-CC-LL-NN.jpg (person, camera, clothes, image)"
FOLDERS = ("train", "query", "gallery")


def _labels(found: re.Match[str], path: Path) -> tuple[int, int, int]:
    return (check_range(int(found.group(1)), 1, 512, "person id", path),
            check_range(int(found.group(2)), 1, 4, "camera", path),
            check_range(int(found.group(3)), 1, 99, "clothes id", path))


def read(root: str | Path) -> CrossDataset:
    root = check_root(root)
    builder = DatasetBuilder(NAME, root)
    read_flat_folders(builder, root, ((name, name) for name in FOLDERS), PATTERN, HINT, _labels)
    return builder.build(HINT)


LAYOUT = Layout(
    name=NAME, title="VC-Clothes", read=read, markers=("train", "query", "gallery"),
    description="rendered clothes-changing data, 512 persons, 4 cameras",
    request="https://wanfb.github.io/dataset.html (agreement form to the authors)",
)
