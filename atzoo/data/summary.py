"""Statistics of every protocol set of an AT-USTC root, and a guess of which release it is.

A summary *shows* empty sets instead of failing on them: it lists them in `empty_sets`, and those
that training or evaluation cannot do without in `missing_for_training_or_evaluation` (the train
set and the twelve query/gallery sets). Training and evaluation refuse such a root
(`build_train_set`, `require_test_sets`); the summary is how a user finds out why.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from atzoo.data.layout import Records
from atzoo.data.sets import protocol_sets
from atzoo.protocol import IR, RGB, SCENARIO_NAMES

RELEASE_IMAGES = {"403k": 403_599, "135k": 135_000}
"""Approximate image count of each AT-USTC release: the current one and an earlier one."""

RELEASE_TOLERANCE = 0.02
OTHER_RELEASE = "other"

SCENARIO_SET_NAMES = tuple(f"{side}-{name}" for name in SCENARIO_NAMES for side in ("query", "gallery"))
SUMMARY_SET_NAMES = ("train", "train-RGB", "train-IR", "val", "test") + SCENARIO_SET_NAMES
REQUIRED_SET_NAMES = ("train",) + SCENARIO_SET_NAMES


def release_guess(num_images: int) -> str:
    """"403k" or "135k" when the count is within 2% of that release's size, else "other"."""
    for release, expected in RELEASE_IMAGES.items():
        if abs(num_images - expected) <= RELEASE_TOLERANCE * expected:
            return release
    return OTHER_RELEASE


def summary_sets(records: Records) -> dict[str, Records]:
    """The summarised subsets, in display order (see `SUMMARY_SET_NAMES`)."""
    sets = protocol_sets(records)
    train = sets["train"]
    sets["train-RGB"] = train.subset(train.modality == RGB)
    sets["train-IR"] = train.subset(train.modality == IR)
    return {name: sets[name] for name in SUMMARY_SET_NAMES}


def _distinct_per_person(person_index: np.ndarray, values: np.ndarray, num_persons: int) -> np.ndarray:
    """For each person, how many distinct `values` its rows hold."""
    width = int(values.max(initial=0)) + 1
    pairs = np.unique(person_index * width + values)
    return np.bincount(pairs // width, minlength=num_persons)


def set_statistics(records: Records) -> dict[str, Any]:
    """Identities, clothes per identity (mean, min, max), RGB and IR cameras per identity (mean),
    images. Per-identity figures of an empty set are None."""
    persons, person_index = np.unique(records.person, return_inverse=True)
    num_persons = len(persons)
    if num_persons == 0:
        return {"identities": 0, "clothes_per_identity": {"mean": None, "min": None, "max": None},
                "rgb_cameras_per_identity": None, "ir_cameras_per_identity": None, "images": 0}
    clothes = _distinct_per_person(person_index, records.clothes, num_persons)
    rgb, ir = records.modality == RGB, records.modality == IR
    rgb_cameras = _distinct_per_person(person_index[rgb], records.camera[rgb], num_persons)
    ir_cameras = _distinct_per_person(person_index[ir], records.camera[ir], num_persons)
    return {
        "identities": num_persons,
        "clothes_per_identity": {"mean": float(clothes.mean()), "min": int(clothes.min()), "max": int(clothes.max())},
        "rgb_cameras_per_identity": float(rgb_cameras.mean()),
        "ir_cameras_per_identity": float(ir_cameras.mean()),
        "images": len(records),
    }


def summarize(records: Records) -> dict[str, Any]:
    """A JSON-able summary of a root.

    Keys: `root`, `images` (total), `release` ("403k", "135k" or "other"), `sets` (statistics keyed
    by set name in `SUMMARY_SET_NAMES` order), `empty_sets`, and
    `missing_for_training_or_evaluation` (the empty ones among train and the query/gallery sets).
    """
    sets = {name: set_statistics(subset) for name, subset in summary_sets(records).items()}
    empty = [name for name, stats in sets.items() if stats["images"] == 0]
    return {
        "root": str(records.root),
        "images": len(records),
        "release": release_guess(len(records)),
        "sets": sets,
        "empty_sets": empty,
        "missing_for_training_or_evaluation": [name for name in empty if name in REQUIRED_SET_NAMES],
    }
