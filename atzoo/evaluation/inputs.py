"""Checking and preparing what the evaluation is given: features and the four label arrays.

The fast evaluation and the reference oracle share this step, so both rank exactly the same
L2-normalised float32 vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from atzoo.errors import FeaturesError
from atzoo.protocol import CAMERAS, FLAGS, SCENARIOS, TEST_FLAGS, modalities_of_cameras

NUM_HEADS = len(SCENARIOS)


@dataclass(frozen=True)
class Labels:
    """The labels the protocol's filters read, row-aligned; the modality follows from the camera."""

    person: np.ndarray
    clothes: np.ndarray
    camera: np.ndarray

    @cached_property
    def modality(self) -> np.ndarray:
        return modalities_of_cameras(self.camera)

    def take(self, rows: np.ndarray) -> Labels:
        return Labels(self.person[rows], self.clothes[rows], self.camera[rows])


@dataclass(frozen=True)
class TestData:
    """Test rows only (flags 2-10), features L2-normalised float32 of shape (N, H, D), H in {1, 6}."""

    features: np.ndarray
    person: np.ndarray
    clothes: np.ndarray
    camera: np.ndarray
    flag: np.ndarray

    @cached_property
    def labels(self) -> Labels:
        return Labels(self.person, self.clothes, self.camera)

    @property
    def modality(self) -> np.ndarray:
        return self.labels.modality

    def head(self, index: int) -> np.ndarray:
        """Features of output `index` (a one-output model uses its only output everywhere)."""
        return self.features[:, index if self.features.shape[1] > 1 else 0]

    def rows(self, flags: tuple[int, ...]) -> np.ndarray:
        return np.flatnonzero(np.isin(self.flag, flags))


def _as_numpy(array: Any) -> np.ndarray:
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def _int_labels(name: str, values: Any, n: int) -> np.ndarray:
    array = _as_numpy(values)
    if array.shape != (n,):
        raise FeaturesError(f"{name} must have shape ({n},) like the features, got {array.shape}")
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise FeaturesError(f"{name} must hold integers, got non-integer values")
    elif array.dtype.kind not in "iub":
        raise FeaturesError(f"{name} must hold integers, got dtype {array.dtype}")
    return array.astype(np.int64)


def check_labels(person: Any, clothes: Any, camera: Any, flag: Any, n: int) -> tuple[np.ndarray, ...]:
    """The four label arrays as int64, each of length `n`, with cameras 1-16 and flags 0-10."""
    person, clothes, camera, flag = (_int_labels(name, values, n) for name, values in
                                     (("pid", person), ("clothes", clothes), ("camera", camera), ("flag", flag)))
    bad_flags = flag[(flag < FLAGS[0]) | (flag > FLAGS[-1])]
    if bad_flags.size:
        raise FeaturesError(f"flag must be in 0-10, found {int(bad_flags[0])}")
    bad_cameras = camera[np.isin(flag, TEST_FLAGS) & ((camera < CAMERAS[0]) | (camera > CAMERAS[-1]))]
    if bad_cameras.size:
        raise FeaturesError(f"camera must be in 1-16, found {int(bad_cameras[0])}")
    return person, clothes, camera, flag


def check_features(features: Any, n: int | None = None) -> np.ndarray:
    """Features as float (N, H, D) with H = 1 or 6, finite; `n` (if given) is the expected N."""
    array = _as_numpy(features)
    if array.dtype.kind not in "fiu":
        raise FeaturesError(f"features must be a float array, got dtype {array.dtype}")
    if array.ndim == 2:
        array = array[:, None, :]
    if array.ndim != 3 or array.shape[1] not in (1, NUM_HEADS) or array.shape[2] == 0:
        raise FeaturesError(f"features must have shape (N, D) or (N, {NUM_HEADS}, D), got {_as_numpy(features).shape}")
    if n is not None and array.shape[0] != n:
        raise FeaturesError(f"features have {array.shape[0]} rows but the labels have {n}")
    return array


def prepare(features: Any, person: Any, clothes: Any, camera: Any, flag: Any) -> TestData:
    """Validate, keep the test rows (flags 2-10) and L2-normalise the features in float32."""
    feats = check_features(features)
    person, clothes, camera, flag = check_labels(person, clothes, camera, flag, feats.shape[0])
    keep = np.isin(flag, TEST_FLAGS)
    if not _all_finite(feats):
        raise FeaturesError("features contain NaN or infinite values")
    feats = _normalized(feats if keep.all() else feats[keep])
    return TestData(feats, person[keep], clothes[keep], camera[keep], flag[keep])


def _all_finite(feats: np.ndarray) -> bool:
    """Whether every value is finite. A NaN or infinite value makes its vector's squared norm NaN or
    infinite, so the squared norms (one fast pass, no array of the features' size) decide; only when
    one is not finite (possibly an overflow of large finite values) is every value checked."""
    squared = np.einsum("nhd,nhd->nh", feats, feats)
    return bool(np.all(np.isfinite(squared))) or bool(np.all(np.isfinite(feats)))


def _normalized(feats: np.ndarray) -> np.ndarray:
    """L2-normalised float32; features that already are (within 1e-6) are used as given, uncopied,
    which keeps memory flat for very large test sets."""
    feats = np.ascontiguousarray(feats, dtype=np.float32)
    norms = np.sqrt(np.einsum("nhd,nhd->nh", feats, feats))[:, :, None]
    if np.all(np.abs(norms - 1) <= 1e-6):
        return feats
    return (feats / np.maximum(norms, np.float32(1e-12))).astype(np.float32, copy=False)
