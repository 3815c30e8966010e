"""What every public Re-ID layout reader shares: the columnar image table, named sets of rows,
and the checks that turn a wrong folder, a stray file name or an empty split into a clear error.

A `CrossDataset` holds each image once (`path` relative to `root`, posix separators) with its
person, camera, modality (1 visible, 2 infrared) and clothes label. `clothes` is only ever compared
between images of the same person; a dataset without clothes labels gives every image 0. A set is
an array of row indices, so an image that belongs to several sets (RegDB's ten trials) is stored
once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from atzoo.errors import DataError
from atzoo.protocol import IR, RGB

VISIBLE = RGB
INFRARED = IR
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass(frozen=True)
class CrossDataset:
    """The images of one public dataset root and its named sets (row indices into the columns)."""

    layout: str
    root: Path
    path: np.ndarray
    person: np.ndarray
    camera: np.ndarray
    modality: np.ndarray
    clothes: np.ndarray
    sets: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.path)

    def rows(self, name: str) -> np.ndarray:
        if name not in self.sets:
            raise DataError(f"{self.root}: the {self.layout} layout has no set {name!r} "
                            f"(sets: {', '.join(self.sets)})")
        return self.sets[name]

    def only_sets(self, names: Iterable[str]) -> CrossDataset:
        """The same dataset keeping only the images of `names`, with those sets renumbered."""
        names = list(dict.fromkeys(names))
        keep = np.unique(np.concatenate([self.rows(n) for n in names])) if names else np.zeros(0, np.int64)
        new_index = np.full(len(self), -1, np.int64)
        new_index[keep] = np.arange(len(keep))
        return CrossDataset(self.layout, self.root, self.path[keep], self.person[keep], self.camera[keep],
                            self.modality[keep], self.clothes[keep], {n: new_index[self.sets[n]] for n in names})


@dataclass
class DatasetBuilder:
    """Collects images set by set; an image met twice (same relative path) keeps one row."""

    layout: str
    root: Path
    _rows: dict[str, int] = field(default_factory=dict)
    _columns: dict[str, list] = field(default_factory=lambda: {k: [] for k in
                                                               ("path", "person", "camera", "modality", "clothes")})
    _sets: dict[str, list[int]] = field(default_factory=dict)

    def declare(self, set_name: str) -> None:
        self._sets.setdefault(set_name, [])

    def add(self, set_name: str, path: str, person: int, camera: int, modality: int, clothes: int = 0) -> None:
        row = self._rows.get(path)
        if row is None:
            row = len(self._rows)
            self._rows[path] = row
            for key, value in (("path", path), ("person", person), ("camera", camera), ("modality", modality),
                               ("clothes", clothes)):
                self._columns[key].append(value)
        elif (self._columns["person"][row], self._columns["camera"][row]) != (person, camera):
            raise DataError(f"{self.root / path} is listed twice with different labels "
                            f"(person {self._columns['person'][row]} camera {self._columns['camera'][row]}, "
                            f"then person {person} camera {camera})")
        self._sets.setdefault(set_name, []).append(row)

    def build(self, hint: str) -> CrossDataset:
        """The dataset; an empty set is an error naming it and the layout (`hint`)."""
        for name, rows in self._sets.items():
            if not rows:
                raise DataError(f"{self.root}: the {name} set of this {self.layout} root is empty ({hint})")
        columns = {key: np.asarray(values, dtype=object if key == "path" else np.int64)
                   for key, values in self._columns.items()}
        if not len(columns["path"]):
            columns["path"] = np.zeros(0, dtype=object)
        return CrossDataset(self.layout, self.root, columns["path"], columns["person"], columns["camera"],
                            columns["modality"], columns["clothes"],
                            {name: np.asarray(rows, np.int64) for name, rows in self._sets.items()})


def check_root(root: str | os.PathLike) -> Path:
    root = Path(root)
    if not root.exists():
        raise DataError(f"dataset root {root} does not exist")
    if not root.is_dir():
        raise DataError(f"dataset root {root} is not a directory")
    return root


def require_dir(root: Path, relative: str, hint: str) -> Path:
    folder = root / relative
    if not folder.is_dir():
        raise DataError(f"{root} has no folder {relative}/ ({hint})")
    return folder


def require_file(root: Path, relative: str, hint: str) -> Path:
    path = root / relative
    if not path.is_file():
        raise DataError(f"{root} has no file {relative} ({hint})")
    return path


def is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def image_names(folder: Path) -> list[str]:
    """Image file names directly in `folder`, sorted; other files are ignored."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.is_file() and is_image(e.name))


def sub_folders(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.is_dir())


def match_name(pattern: re.Pattern[str], name: str, where: Path, hint: str) -> re.Match[str]:
    found = pattern.match(name)
    if found is None:
        raise DataError(f"{where / name} does not follow the naming scheme ({hint})")
    return found


def check_range(value: int, low: int, high: int, what: str, where: Path) -> int:
    if not low <= value <= high:
        raise DataError(f"{where}: {what} {value} is outside {low}-{high}")
    return value


Labels = Callable[[re.Match[str], Path], "tuple[int, int, int] | None"]
"""(person, camera, clothes) of an image from its name's match and its path; None skips the image."""


def read_flat_folders(builder: DatasetBuilder, root: Path, folders: Iterable[tuple[str, str]],
                      pattern: re.Pattern[str], hint: str, labels: Labels) -> None:
    """Visible images lying directly in each (set name, folder) that `pattern` names, labelled by
    `labels`: the layout of Market-1501, LTCC, DeepChange and VC-Clothes."""
    for set_name, folder_name in folders:
        folder = require_dir(root, folder_name, hint)
        builder.declare(set_name)
        for name in image_names(folder):
            found = labels(match_name(pattern, name, folder, hint), folder / name)
            if found is not None:
                person, camera, clothes = found
                builder.add(set_name, f"{folder_name}/{name}", person, camera, VISIBLE, clothes)


def read_id_list(path: Path) -> list[int]:
    """Person ids written comma-separated on the first line (SYSU-MM01's and LLCM's id files)."""
    text = path.read_text(encoding="utf-8").strip()
    first = text.splitlines()[0] if text else ""
    try:
        ids = [int(token) for token in first.split(",") if token.strip()]
    except ValueError:
        raise DataError(f"{path}: expected person ids separated by commas on the first line, got {first[:60]!r}") from None
    if not ids:
        raise DataError(f"{path} lists no person id")
    return ids


def read_list_file(path: Path) -> list[tuple[str, int]]:
    """Lines `RELATIVE/PATH LABEL` (MSMT17's, RegDB's and LLCM's list files)."""
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DataError(f"{path} line {number}: expected 'IMAGE_PATH LABEL', got {line.strip()[:80]!r}")
        entries.append((parts[0], int(parts[1])))
    if not entries:
        raise DataError(f"{path} lists no image")
    return entries


def existing_files(root: Path, folder: str) -> set[str]:
    """Every file under `root/folder`, as paths relative to `root` (one walk, for list checks)."""
    found: set[str] = set()
    base = root / folder
    for directory, _, files in os.walk(base):
        relative = Path(directory).relative_to(root).as_posix()
        found.update(f"{relative}/{name}" for name in files)
    return found


@dataclass(frozen=True)
class Layout:
    """One public dataset's layout: how to recognise a root, read it, and where to request it.

    `markers`: relative paths that all exist in a root of this layout (enough to tell the ten
    apart); `any_markers`: at least one of these exists too (CUHK03's detected/labeled).
    """

    name: str
    title: str
    read: Callable[[Path], CrossDataset]
    markers: tuple[str, ...]
    description: str
    request: str
    any_markers: tuple[str, ...] = ()

    def looks_like(self, root: Path) -> bool:
        if not all((root / marker).exists() for marker in self.markers):
            return False
        return not self.any_markers or any((root / marker).exists() for marker in self.any_markers)
