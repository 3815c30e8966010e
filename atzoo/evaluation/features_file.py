"""Features files: `.npz` with `feats` (N, D) or (N, 6, D), `pid`, `clothes`, `camera`, `flag`
(ints, length N) and optionally `paths` (strings); the format is `atzoo.formats.features`. The
headers are checked before anything is loaded, the values (finite, of a sane magnitude, not
degenerate; labels in range) once loaded, and again before a file is written. Never unpickled."""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from atzoo.errors import FeaturesError
from atzoo.evaluation.inputs import check_features, check_labels, value_problem
from atzoo.formats.features import LABEL_KEYS, REQUIRED_KEYS, check_layout, read_headers
from atzoo.formats.special import refuse_special
from atzoo.io import atomic_path


@dataclass(frozen=True)
class FeatureSet:
    """Embeddings of test images with their labels, as stored in a features file."""

    feats: np.ndarray
    pid: np.ndarray
    clothes: np.ndarray
    camera: np.ndarray
    flag: np.ndarray
    paths: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.feats)

    def evaluate(self, **options: Any) -> dict[str, Any]:
        from atzoo.evaluation.scenarios import evaluate_features

        return evaluate_features(self.feats, self.pid, self.clothes, self.camera, self.flag, **options)


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays, once their headers (read first, without loading anything) passed `check_layout`."""
    refuse_special(path, follow_links=True)
    if not path.is_file():
        raise FeaturesError(f"{path}: no such features file")
    if not zipfile.is_zipfile(path):
        raise FeaturesError(f"{path} is not a .npz (zip) file; expected arrays {', '.join(REQUIRED_KEYS)}")
    check_layout(path, read_headers(path))
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = REQUIRED_KEYS + (("paths",) if "paths" in archive.files else ())
            return {key: archive[key] for key in keys}
    except ValueError as error:
        raise FeaturesError(f"{path}: an array needs pickle to load or is damaged ({error}); "
                            "store plain numeric arrays and strings") from None
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise FeaturesError(f"{path} cannot be read as .npz ({error})") from None


def is_features_file(path: str | os.PathLike) -> bool:
    """Whether `path` is a .npz holding a `feats` array (what `save_features` and `atzoo embed` write)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return "feats.npy" in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def load_features(path: str | os.PathLike) -> FeatureSet:
    """Read and check a features file; every problem is a FeaturesError naming the file and array."""
    path = Path(path)
    arrays = _read_arrays(path)
    try:
        feats = check_features(arrays["feats"])
        problem = value_problem(feats)
        if problem:
            raise FeaturesError(problem)
        pid, clothes, camera, flag = (arrays[key] for key in LABEL_KEYS)
        labels = check_labels(pid, clothes, camera, flag, n=feats.shape[0])
    except FeaturesError as error:
        raise FeaturesError(f"{path}: {error}") from None
    paths = arrays.get("paths")
    if paths is not None and (paths.shape != (feats.shape[0],) or paths.dtype.kind not in "US"):
        raise FeaturesError(f"{path}: paths must be {feats.shape[0]} strings, got {paths.dtype} {paths.shape}")
    feats = arrays["feats"] if arrays["feats"].ndim == 3 else feats[:, 0, :]
    person, clothes_ids, cameras, flags = labels
    return FeatureSet(feats, person, clothes_ids, cameras, flags, paths=paths)


def save_features(path: str | os.PathLike, feats: Any, pid: Any, clothes: Any, camera: Any, flag: Any,
                  paths: Any = None) -> Path:
    """Check and write a features file atomically (uncompressed .npz); returns its path."""
    path = Path(path)
    feats_np = np.asarray(feats.detach().cpu().numpy() if hasattr(feats, "detach") else feats)
    checked = check_features(feats_np)
    problem = value_problem(checked)
    if problem:
        raise FeaturesError(f"not writing {path}: {problem}")
    labels = check_labels(pid, clothes, camera, flag, n=checked.shape[0])
    arrays: dict[str, Any] = {"feats": feats_np, **dict(zip(LABEL_KEYS, labels))}
    if paths is not None:
        arrays["paths"] = np.asarray([str(p) for p in paths])
        if arrays["paths"].shape != (checked.shape[0],):
            raise FeaturesError(f"paths must hold {checked.shape[0]} strings, got {len(arrays['paths'])}")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    return path
