"""A features file: a `.npz` (zip) archive of `.npy` arrays, checked from the headers inside it before
any array is loaded.

```
feats    float16/32/64  (N, D) or (N, 6, D)   embeddings, one row per image
pid      integer        (N,)                  person id, 0 .. MAX_LABEL (-1: unlabelled, `atzoo embed`)
clothes  integer        (N,)                  clothes id, 0 .. MAX_LABEL (-1: unlabelled)
camera   integer        (N,)                  camera 1-16 (-1: unlabelled)
flag     integer        (N,)                  split flag 0-10 (-1: unlabelled)
paths    unicode/bytes  (N,)                  optional: where each row came from
```

Reading the shapes and dtypes from each member's `.npy` header costs a few hundred bytes per array,
whatever the file's size, so a file whose arrays would not fit (a compressed "bomb" declaring a huge
array), whose arrays disagree in length, whose member sizes disagree with their headers, or that
needs pickle is refused in bounded memory before anything is decompressed.
"""

from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atzoo.errors import FeaturesError

FEATURES = "feats"
LABEL_KEYS = ("pid", "clothes", "camera", "flag")
REQUIRED_KEYS = (FEATURES, *LABEL_KEYS)
OPTIONAL_KEYS = ("paths",)
MAX_BYTES = 32 << 30
MAX_MEMBERS = 16
MAX_HEADER_BYTES = 64 << 10
MAX_LABEL = 10**9
UNLABELLED = -1
MAX_FEATURE_MAGNITUDE = 1e6
ENV_MAX_BYTES = "ATZOO_MAX_FEATURES_BYTES"


@dataclass(frozen=True)
class ArrayHeader:
    """One array of the archive as its `.npy` header declares it."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    member_bytes: int
    header_bytes: int

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def max_bytes() -> int:
    """The largest total size of a features file's arrays, once loaded (`ATZOO_MAX_FEATURES_BYTES`)."""
    value = os.environ.get(ENV_MAX_BYTES, "")
    return int(value) if value.isdigit() else MAX_BYTES


def _read_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> ArrayHeader:
    name = info.filename.removesuffix(".npy")
    with archive.open(info) as member:
        try:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(member, max_header_size=MAX_HEADER_BYTES)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(member, max_header_size=MAX_HEADER_BYTES)
            else:
                raise ValueError(f"unknown .npy version {version}")
        except (ValueError, EOFError, OSError, zipfile.BadZipFile) as error:
            raise FeaturesError(f"{path}: array {name!r} has no readable .npy header ({error})") from None
        header_bytes = member.tell()
    if dtype.hasobject:
        raise FeaturesError(f"{path}: array {name!r} has dtype {dtype}, which needs pickle to load; store plain "
                            f"numeric arrays and strings")
    if fortran and len(shape) > 1:
        raise FeaturesError(f"{path}: array {name!r} is stored in Fortran order; save C-ordered arrays")
    return ArrayHeader(name, tuple(int(d) for d in shape), dtype, info.file_size, header_bytes)


def read_headers(path: str | os.PathLike) -> dict[str, ArrayHeader]:
    """name -> header of every array in the archive, read without loading any array."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = [info for info in archive.infolist() if not info.is_dir()]
            if len(members) > MAX_MEMBERS:
                raise FeaturesError(f"{path} holds {len(members)} files; a features file holds at most "
                                    f"{MAX_MEMBERS} arrays ({', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)})")
            strange = [info.filename for info in members if not info.filename.endswith(".npy") or "/" in
                       info.filename]
            if strange:
                raise FeaturesError(f"{path} holds {strange[0]!r}, which is not an array of a features file")
            return {header.name: header for header in (_read_header(archive, info, path) for info in members)}
    except zipfile.BadZipFile as error:
        raise FeaturesError(f"{path} cannot be read as .npz ({error})") from None


def check_layout(path: str | os.PathLike, headers: dict[str, ArrayHeader]) -> int:
    """Refuse what the headers show to be wrong; returns N, the number of rows."""
    missing = [key for key in REQUIRED_KEYS if key not in headers]
    if missing:
        raise FeaturesError(f"{path} lacks the array(s) {', '.join(missing)}; expected "
                            f"{', '.join(REQUIRED_KEYS)} (and optionally paths)")
    for header in headers.values():
        if header.member_bytes != header.header_bytes + header.nbytes:
            raise FeaturesError(f"{path}: array {header.name!r} declares {header.shape} {header.dtype} "
                                f"({header.nbytes} bytes) but its member holds {header.member_bytes - header.header_bytes}"
                                f" bytes of data; the file is damaged or forged")
    total = sum(header.nbytes for header in headers.values())
    if total > max_bytes():
        raise FeaturesError(f"{path} declares {total:,} bytes of arrays, more than the {max_bytes():,} allowed "
                            f"(set {ENV_MAX_BYTES} to raise it); refused before loading")
    feats = headers[FEATURES]
    if feats.dtype.kind != "f":
        raise FeaturesError(f"{path}: feats must be a float array, got dtype {feats.dtype}")
    if len(feats.shape) not in (2, 3) or feats.shape[-1] == 0 or (len(feats.shape) == 3 and feats.shape[1] not in
                                                                  (1, 6)):
        raise FeaturesError(f"{path}: feats must have shape (N, D) or (N, 6, D), got {feats.shape}")
    rows = feats.shape[0]
    for key in LABEL_KEYS:
        header = headers[key]
        if header.dtype.kind not in "iu":
            raise FeaturesError(f"{path}: {key} must hold integers, got dtype {header.dtype} (floats and booleans "
                                f"are not cast)")
        if header.shape != (rows,):
            raise FeaturesError(f"{path}: {key} has shape {header.shape}; the features have {rows} rows, so it "
                                f"must be ({rows},)")
    paths = headers.get("paths")
    if paths is not None and (paths.shape != (rows,) or paths.dtype.kind not in "US"):
        raise FeaturesError(f"{path}: paths must be {rows} strings, got {paths.dtype} {paths.shape}")
    extra = sorted(set(headers) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if extra:
        raise FeaturesError(f"{path} holds unexpected array(s) {', '.join(extra)}; expected "
                            f"{', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)}")
    return rows


def label_problem(name: str, values: np.ndarray, *, allow_unlabelled: bool = False) -> str | None:
    """Why integer labels are out of range, or None: ids 0..MAX_LABEL (and -1 for unlabelled rows)."""
    low = UNLABELLED if allow_unlabelled else 0
    if values.size == 0:
        return None
    smallest, largest = int(values.min()), int(values.max())
    if smallest < low or largest > MAX_LABEL:
        bad = smallest if smallest < low else largest
        return f"{name} must be in {low}..{MAX_LABEL}, found {bad}"
    return None
