"""RegDB (Nguyen et al., Sensors 2017): 412 persons, one visible and one thermal camera, 10 images each.

```
RegDB/
  Visible/1/female_back_v_06405_1.bmp    person folder 1-412 / image
  Thermal/1/female_back_t_06405_1.bmp
  idx/train_visible_1.txt ... idx/test_thermal_10.txt     lines "Visible/1/... .bmp LABEL"
```
The ten trials are ten random 206/206 person splits, given by the idx/ list files. The person is
the folder number; the list's label must be the same for every image of a folder. The visible
camera is camera 1, the thermal camera 2.
"""

from __future__ import annotations

import re
from pathlib import Path

from atzoo.data.layouts.base import (INFRARED, VISIBLE, CrossDataset, DatasetBuilder, Layout, check_range,
                                     check_root, existing_files, read_list_file, require_dir)
from atzoo.errors import DataError

NAME = "regdb"
TRIALS = tuple(range(1, 11))
MODALITIES = {"visible": ("Visible", VISIBLE), "thermal": ("Thermal", INFRARED)}
ENTRY = re.compile(r"^(Visible|Thermal)/(\d+)/[^/]+\.(?:bmp|jpg|jpeg|png)$", re.IGNORECASE)
HINT = ("RegDB layout: Visible/ and Thermal/ person folders, idx/{train,test}_{visible,thermal}_{1..10}.txt "
        "with lines 'Visible/P/NAME.bmp LABEL'")


def set_name(trial: int, part: str, modality: str) -> str:
    return f"trial{trial}/{part}-{modality}"


def _trial_list(root: Path, part: str, modality: str, trial: int) -> Path:
    path = root / "idx" / f"{part}_{modality}_{trial}.txt"
    if not path.is_file():
        present = sorted(p.name for p in (root / "idx").glob(f"{part}_{modality}_*.txt"))
        raise DataError(f"{root} has no idx/{path.name}: RegDB's trials are 1-10, each with train and test "
                        f"lists per modality (found: {', '.join(present) or 'none'})")
    return path


def _check_stray_trials(root: Path) -> None:
    pattern = re.compile(r"^(train|test)_(visible|thermal)_(\d+)\.txt$")
    for path in sorted((root / "idx").iterdir()):
        found = pattern.match(path.name)
        if found and int(found.group(3)) not in TRIALS:
            raise DataError(f"{path}: trial {found.group(3)} is outside RegDB's trials 1-10")


def read(root: str | Path) -> CrossDataset:
    root = check_root(root)
    for folder, _ in MODALITIES.values():
        require_dir(root, folder, HINT)
    require_dir(root, "idx", HINT)
    _check_stray_trials(root)
    files = existing_files(root, "Visible") | existing_files(root, "Thermal")
    builder = DatasetBuilder(NAME, root)
    for trial in TRIALS:
        for part in ("train", "test"):
            for modality, (folder, modality_id) in MODALITIES.items():
                list_path = _trial_list(root, part, modality, trial)
                name = set_name(trial, part, modality)
                builder.declare(name)
                labels: dict[int, int] = {}
                for number, (entry, label) in enumerate(read_list_file(list_path), start=1):
                    where = Path(f"{list_path} line {number}")
                    found = ENTRY.match(entry)
                    if found is None or found.group(1) != folder:
                        raise DataError(f"{where}: {entry!r} is not an image under {folder}/ ({HINT})")
                    person = check_range(int(found.group(2)), 1, 412, "person folder", where)
                    if labels.setdefault(person, label) != label:
                        raise DataError(f"{where}: label {label} differs from label {labels[person]} given "
                                        f"earlier to person folder {person}")
                    if entry not in files:
                        raise DataError(f"{where}: {root / entry} does not exist")
                    builder.add(name, entry, person, modality_id, modality_id)
    return builder.build(HINT)


LAYOUT = Layout(
    name=NAME, title="RegDB", read=read, markers=("Visible", "Thermal"),
    description="visible-thermal, 412 persons, one camera pair, 10 fixed random 206/206 trials",
    request="http://dm.dongguk.edu/link.html (Dongguk University; request by e-mail)",
)
