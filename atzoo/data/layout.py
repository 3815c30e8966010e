"""Reading an AT-USTC root (`pNNN-dNN-cNN/camNN-fF-NNNN.jpg`) into columnar records."""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from atzoo.errors import DataError
from atzoo.protocol import CAMERAS, FLAGS, modalities_of_cameras

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
FOLDER_PATTERN = re.compile(r"^p(\d+)-d(\d+)-c(\d+)$")
FILE_PATTERN = re.compile(r"^cam(\d+)-f(\d+)-(\d+)\.(?:jpg|jpeg|png)$", re.IGNORECASE)
LAYOUT_HINT = "expected pNNN-dNN-cNN/camNN-fF-NNNN.jpg (or .png)"


@dataclass(frozen=True)
class Records:
    """One row per image, stored as parallel numpy arrays.

    `path` is relative to `root` (posix separators). `clothes` is the clothing id within its
    person, as in the folder name; a clothes identity is the pair (person, clothes).
    """

    root: Path
    path: np.ndarray
    person: np.ndarray
    date: np.ndarray
    clothes: np.ndarray
    camera: np.ndarray
    modality: np.ndarray
    flag: np.ndarray
    frame: np.ndarray

    def __len__(self) -> int:
        return len(self.path)

    def subset(self, selector: np.ndarray) -> Records:
        """Rows picked by a boolean mask or an index array, in that order."""
        columns = {f.name: getattr(self, f.name)[selector] for f in fields(self) if f.name != "root"}
        return Records(root=self.root, **columns)

    def with_flags(self, flags: tuple[int, ...] | list[int]) -> Records:
        return self.subset(np.isin(self.flag, list(flags)))

    def absolute_paths(self) -> list[Path]:
        return [self.root / p for p in self.path]


def _empty_columns() -> dict[str, list]:
    return {name: [] for name in ("path", "person", "date", "clothes", "camera", "flag", "frame")}


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _scan(root: Path, progress: bool) -> tuple[dict[str, list], list[str]]:
    columns = _empty_columns()
    with os.scandir(root) as top:
        entries = sorted(top, key=lambda e: e.name)
    folders = [e for e in entries if e.is_dir()]
    bad = [e.name for e in entries if e.is_file() and _is_image_name(e.name)]
    bar = tqdm(folders, desc=f"reading {root}", unit="folder", disable=None if progress else True, leave=False)
    for folder in bar:
        folder_match = FOLDER_PATTERN.match(folder.name)
        with os.scandir(folder.path) as inside:
            names = sorted(e.name for e in inside if e.is_file() and _is_image_name(e.name))
        for name in names:
            file_match = FILE_PATTERN.match(name)
            relative = f"{folder.name}/{name}"
            if folder_match is None or file_match is None:
                bad.append(relative)
                continue
            person, date, clothes = (int(g) for g in folder_match.groups())
            camera, flag, frame = (int(g) for g in file_match.groups())
            for key, value in (("path", relative), ("person", person), ("date", date), ("clothes", clothes),
                               ("camera", camera), ("flag", flag), ("frame", frame)):
                columns[key].append(value)
    return columns, bad


def _nested_root_hint(root: Path) -> str:
    """Name a sub-folder that looks like the real root, for a user who pointed one level too high."""
    with os.scandir(root) as top:
        for entry in sorted(top, key=lambda e: e.name):
            if entry.is_dir() and not FOLDER_PATTERN.match(entry.name):
                with os.scandir(entry.path) as inside:
                    if any(e.is_dir() and FOLDER_PATTERN.match(e.name) for e in inside):
                        return f"; did you mean {root / entry.name}?"
    return ""


def _check_range(root: Path, columns: dict[str, list], key: str, allowed: tuple[int, ...], what: str) -> None:
    values = np.asarray(columns[key])
    wrong = np.flatnonzero(~np.isin(values, allowed))
    if wrong.size:
        found = ", ".join(str(v) for v in np.unique(values[wrong])[:5])
        examples = ", ".join(columns["path"][i] for i in wrong[:3])
        raise DataError(f"{wrong.size} image(s) under {root} have a {key} outside {what} "
                        f"(found {key} {found}; e.g. {examples})")


def parse_root(root: str | os.PathLike, *, skip_bad_names: bool = False, progress: bool = False) -> Records:
    """Read every image of an AT-USTC root into `Records`, sorted by folder then file name.

    Image files whose names do not follow the layout (including images lying directly in the
    root) are an error listing how many and the first few; with `skip_bad_names=True` they are
    skipped with a warning instead. Other files are ignored. `progress` shows a bar on stderr
    when stderr is a terminal.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"dataset root {root} does not exist")
    if not root.is_dir():
        raise DataError(f"dataset root {root} is not a directory")
    columns, bad = _scan(root, progress)
    if bad:
        message = (f"{len(bad)} image file(s) under {root} do not match the AT-USTC layout ({LAYOUT_HINT}); "
                   f"first: {', '.join(bad[:5])}")
        if not skip_bad_names:
            raise DataError(message + " (use --skip-bad-names to skip them)")
        warnings.warn(message + "; skipped", stacklevel=2)
    if not columns["path"]:
        raise DataError(f"no images found under {root} ({LAYOUT_HINT}){_nested_root_hint(root)}")
    _check_range(root, columns, "camera", CAMERAS, "1-16")
    _check_range(root, columns, "flag", FLAGS, "0-10")
    camera = np.asarray(columns["camera"], dtype=np.int64)
    return Records(
        root=root,
        path=np.asarray(columns["path"], dtype=object),
        person=np.asarray(columns["person"], dtype=np.int64),
        date=np.asarray(columns["date"], dtype=np.int64),
        clothes=np.asarray(columns["clothes"], dtype=np.int64),
        camera=camera,
        modality=modalities_of_cameras(camera),
        flag=np.asarray(columns["flag"], dtype=np.int64),
        frame=np.asarray(columns["frame"], dtype=np.int64),
    )
