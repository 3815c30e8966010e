"""Where a result comes from: which data (release and fingerprint), which weights (sha256), which
evaluator. Recorded in every ``metrics.json`` the runner writes and carried into packages.

The release is read off the data, never taken on trust: ``synthetic`` for a root atzoo generated,
``403k`` only when the root has exactly the official release's split counts, and ``custom`` for
any other AT-USTC-format collection, which is then known by its fingerprint alone.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path

import numpy as np

from atzoo.data import Records
from atzoo.io import sha256_file
from atzoo.formats.metrics import DatasetProvenance, Provenance
from atzoo.protocol import EVALUATOR_VERSION, PROTOCOL_VERSION

SYNTHETIC_MANIFEST = "synthetic.json"
TRAIN_FLAGS = (0, 1)
OFFICIAL_COUNTS = {"403k": {"train_images": 286_087, "train_persons": 135, "test_images": 117_512,
                            "test_persons": 135}}
"""The official split sizes of each AT-USTC release whose exact counts are published (PROTOCOL.md)."""


def protocol_fingerprint(records: Records) -> str:
    """sha256 over every image's relative path, size in bytes and labels (person, clothes, camera,
    modality, split flag), sorted by path: independent of where the data lies; never reads pixels."""
    digest = hashlib.sha256()
    order = np.argsort(records.path, kind="stable")
    root = Path(records.root)
    for index in order.tolist():
        relative = str(records.path[index])
        size = (root / relative).stat().st_size
        labels = (records.person[index], records.clothes[index], records.camera[index], records.modality[index],
                  records.flag[index])
        digest.update(f"{relative}\0{size}\0{','.join(str(int(v)) for v in labels)}\n".encode())
    return digest.hexdigest()


def split_counts(records: Records) -> dict[str, int]:
    train = np.isin(records.flag, TRAIN_FLAGS)
    return {"train_images": int(train.sum()), "train_persons": len(np.unique(records.person[train])),
            "test_images": int((~train).sum()), "test_persons": len(np.unique(records.person[~train]))}


def detect_release(records: Records) -> str:
    """``synthetic``, a release whose official counts the data matches exactly, or ``custom``."""
    if (Path(records.root) / SYNTHETIC_MANIFEST).is_file():
        return "synthetic"
    counts = split_counts(records)
    return next((release for release, official in OFFICIAL_COUNTS.items() if counts == official), "custom")


def dataset_provenance(records: Records) -> DatasetProvenance:
    return DatasetProvenance(release=detect_release(records), fingerprint=protocol_fingerprint(records),
                             image_count=len(records))


def evaluation_provenance(records: Records, weights: str | os.PathLike) -> Provenance:
    """The provenance of evaluating the weights file `weights` on `records`, dated now (UTC)."""
    return Provenance(dataset=dataset_provenance(records), weights_sha256=sha256_file(weights),
                      evaluator_version=EVALUATOR_VERSION, protocol_version=PROTOCOL_VERSION,
                      date=dt.datetime.now(dt.timezone.utc).replace(microsecond=0))
