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
from atzoo.formats.features import MAX_FEATURE_MAGNITUDE, MAX_LABEL, UNLABELLED
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
    if array.size and (array.min() < UNLABELLED or array.max() > MAX_LABEL):
        bad = array.min() if array.min() < UNLABELLED else array.max()
        raise FeaturesError(f"{name} must be in {UNLABELLED}..{MAX_LABEL}, found {bad:g}"
                            if array.dtype.kind == "f" else f"{name} must be in {UNLABELLED}..{MAX_LABEL}, found {bad}")
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
    squared = squared_norms(feats)
    problem = value_problem(feats, squared)
    if problem:
        raise FeaturesError(problem)
    feats = _normalized(feats, squared) if keep.all() else _normalized(feats[keep], squared[keep])
    return TestData(feats, person[keep], clothes[keep], camera[keep], flag[keep])


def squared_norms(feats: np.ndarray) -> np.ndarray:
    """Each vector's squared L2 norm (N, H), accumulated in float64 (inf or NaN where the values are)."""
    feats = feats if feats.ndim == 3 else feats[:, None, :]
    with np.errstate(over="ignore", invalid="ignore"):
        return np.einsum("nhd,nhd->nh", feats, feats, dtype=np.float64)


def value_problem(feats: np.ndarray, squared: np.ndarray | None = None) -> str | None:
    """Why these features cannot be ranked, or None: NaN or infinite values, values so large that a
    squared norm overflows (|x| above MAX_FEATURE_MAGNITUDE), all-zero vectors (no direction to rank
    by), or every vector the same (every ranking a tie). One pass computes the squared norms; the
    features are read again only when one of them says something is wrong. `squared`: their
    `squared_norms`, when already computed."""
    feats = feats if feats.ndim == 3 else feats[:, None, :]
    if feats.shape[0] == 0:
        return None
    if squared is None:
        squared = squared_norms(feats)
    if not np.all(np.isfinite(squared)) or float(squared.max()) > MAX_FEATURE_MAGNITUDE ** 2 * feats.shape[2]:
        if not np.all(np.isfinite(feats)):
            bad = int(np.flatnonzero(~np.isfinite(feats).reshape(len(feats), -1).all(axis=1))[0])
            return f"features contain NaN or infinite values (first in row {bad})"
        largest = float(np.abs(feats).max())
        if largest > MAX_FEATURE_MAGNITUDE:
            return (f"features reach {largest:.3g} in magnitude, more than {MAX_FEATURE_MAGNITUDE:g}: their squared "
                    f"norms would overflow; scale them down (L2-normalised features are ideal)")
    zero = np.flatnonzero((squared == 0).any(axis=1))
    if zero.size:
        return (f"{zero.size} feature vector(s) are all zero (first: row {int(zero[0])}); a zero vector has no "
                f"direction to rank by")
    if len(feats) > 1 and np.ptp(squared, axis=0).max() == 0 and np.array_equal(
            feats, np.broadcast_to(feats[:1], feats.shape)):
        return f"all {len(feats)} feature vectors are equal; every ranking would be a tie"
    return None


def _normalized(feats: np.ndarray, squared: np.ndarray) -> np.ndarray:
    """L2-normalised float32, from the features' `squared_norms`; features that already are (within
    1e-6) are used as given, uncopied, which keeps memory flat for very large test sets."""
    feats = np.ascontiguousarray(feats, dtype=np.float32)
    norms = np.sqrt(squared)[:, :, None]
    if np.all(np.abs(norms - 1) <= 1e-6):
        return feats
    return (feats / np.maximum(norms, 1e-12).astype(np.float32)).astype(np.float32, copy=False)
