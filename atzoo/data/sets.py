"""The protocol's sets: the relabelled train set, validation, and the query/gallery sets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atzoo.data.layout import Records
from atzoo.errors import DataError
from atzoo.protocol import (GALLERY_FLAGS, LT_PAIR, QUERY_FLAGS, SCENARIO_NAMES, ST_PAIR, TEST_FLAGS, TRAIN_FLAG,
                            VAL_FLAG)


@dataclass(frozen=True)
class TrainSet:
    """Training images with labels relabelled 0..P-1 (persons) and 0..C-1 (clothes identities).

    A clothes identity is one (person, clothing) pair; `clothes_to_person[c]` is its person label.
    Both relabellings follow sorted order of the original ids.
    """

    records: Records
    person_label: np.ndarray
    clothes_label: np.ndarray
    clothes_to_person: np.ndarray

    @property
    def num_persons(self) -> int:
        return int(self.person_label.max()) + 1

    @property
    def num_clothes(self) -> int:
        return len(self.clothes_to_person)

    def __len__(self) -> int:
        return len(self.records)


def build_train_set(records: Records) -> TrainSet:
    """Relabel the flag-0 images; a root without any is an error."""
    train = records.with_flags((TRAIN_FLAG,))
    if len(train) == 0:
        raise DataError(f"no training images (flag 0) under {records.root}")
    persons, person_label = np.unique(train.person, return_inverse=True)
    pairs = np.stack([train.person, train.clothes], axis=1)
    clothes_pairs, clothes_label = np.unique(pairs, axis=0, return_inverse=True)
    clothes_to_person = np.searchsorted(persons, clothes_pairs[:, 0])
    return TrainSet(train, person_label.reshape(-1), clothes_label.reshape(-1), clothes_to_person)


def protocol_sets(records: Records) -> dict[str, Records]:
    """Every set the protocol names, keyed as `train`, `val`, `query-ST`, `gallery-LT`,
    `query-DT-ST`, `gallery-AD-LT`, ... and `test` (flags 2-10)."""
    sets = {
        "train": records.with_flags((TRAIN_FLAG,)),
        "val": records.with_flags((VAL_FLAG,)),
        "test": records.with_flags(TEST_FLAGS),
    }
    for pair in (ST_PAIR, LT_PAIR):
        sets[f"query-{pair.name}"] = records.with_flags(pair.query_flags)
        sets[f"gallery-{pair.name}"] = records.with_flags(pair.gallery_flags)
    for name in SCENARIO_NAMES:
        sets[f"query-{name}"] = records.with_flags(QUERY_FLAGS[name])
        sets[f"gallery-{name}"] = records.with_flags(GALLERY_FLAGS[name])
    return sets


def require_test_sets(records: Records) -> dict[str, Records]:
    """The query/gallery sets of the six scenarios; an empty one is an error naming it."""
    sets = protocol_sets(records)
    for name in SCENARIO_NAMES:
        for side in ("query", "gallery"):
            if len(sets[f"{side}-{name}"]) == 0:
                flags = QUERY_FLAGS[name] if side == "query" else GALLERY_FLAGS[name]
                raise DataError(f"the {name} {side} set is empty: no images with flag {'/'.join(map(str, flags))} "
                                f"under {records.root}")
    return sets
