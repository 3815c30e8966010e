"""The upload guard: what may leave the machine as part of a model package, and nothing else.

The AT-USTC licence forbids sharing any part of the dataset. The guard therefore scans a folder
before anything is sent (and `atzoo export` scans its package before it is put in place): only the
model package's four files may go; an image, an archive, an array dump, anything named like an
AT-USTC file or folder, or any other file stops it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from atzoo.errors import HubError, UploadBlockedError
from atzoo.formats.packageconfig import CARD, CONFIG, PACKAGE_FILES, RESULTS, WEIGHTS

ALLOWED_FILES = PACKAGE_FILES
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst", ".lz4")
ARRAY_SUFFIXES = (".npy", ".npz", ".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt", ".h5", ".hdf5",
                  ".parquet", ".arrow", ".feather", ".mat", ".lmdb", ".mdb", ".tfrecord", ".csv", ".tsv",
                  ".jsonl")
ATUSTC_NAMES = (re.compile(r"p\d+-d\d+-c\d+", re.IGNORECASE), re.compile(r"cam\d+-f\d+-\d+", re.IGNORECASE))
TEXT_FILES = (CONFIG, RESULTS, CARD)


@dataclass(frozen=True)
class Offender:
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path} ({self.reason})"


# ---------------------------------------------------------------------------------------------
# the guard


def _name_offence(relative: str) -> str:
    for pattern in ATUSTC_NAMES:
        if pattern.search(relative):
            return "named like an AT-USTC file or folder"
    suffixes = [s.lower() for s in Path(relative).suffixes]
    for suffix in suffixes:
        if suffix in IMAGE_SUFFIXES:
            return "an image"
        if suffix in ARCHIVE_SUFFIXES:
            return "an archive"
        if suffix in ARRAY_SUFFIXES:
            return "an array or pickle dump"
    return ""


def _text_offence(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return "not valid UTF-8 text"
    for pattern in ATUSTC_NAMES:
        match = pattern.search(text)
        if match:
            return f"mentions an AT-USTC file name ({match.group(0)!r})"
    return ""


def scan_folder(folder: str | os.PathLike) -> list[Offender]:
    """Every entry of `folder` that must not be uploaded, with the reason; empty when it is clean."""
    folder = Path(folder)
    offenders = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        for name in sorted(dirnames) + sorted(filenames):
            path = Path(dirpath) / name
            relative = path.relative_to(folder).as_posix()
            offence = _name_offence(relative)
            if not offence and path.is_symlink():
                offence = "a link"
            elif not offence and path.is_dir():
                offence = "a folder (a package is four files, no folders)"
            elif not offence and relative not in ALLOWED_FILES:
                offence = f"not in the allow-list ({', '.join(ALLOWED_FILES)})"
            elif not offence and relative in TEXT_FILES:
                offence = _text_offence(path)
            if offence:
                offenders.append(Offender(relative, offence))
    return offenders


def guard(folder: str | os.PathLike) -> None:
    """Raise `UploadBlockedError` listing every offender in `folder` (see `scan_folder`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise HubError(f"{folder} is not a folder; push a package made by `atzoo export`")
    offenders = scan_folder(folder)
    if offenders:
        listed = "\n  ".join(str(o) for o in offenders)
        raise UploadBlockedError(f"upload blocked: {folder} holds {len(offenders)} file(s) that may not be "
                                 f"uploaded (the AT-USTC licence forbids sharing any part of the dataset; only "
                                 f"{', '.join(ALLOWED_FILES)} may go):\n  {listed}")
    if not (folder / WEIGHTS).is_file() or not (folder / CONFIG).is_file():
        raise HubError(f"{folder} lacks {WEIGHTS} or {CONFIG}; push a package made by `atzoo export`")
