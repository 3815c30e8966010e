"""Counts per set of a public dataset root (what `atzoo data summary --layout` prints)."""

from __future__ import annotations

from typing import Any

import numpy as np

from atzoo.data.layouts.base import INFRARED, VISIBLE, CrossDataset


def summarize_dataset(dataset: CrossDataset) -> dict[str, Any]:
    """`layout`, `root`, `images` (distinct files) and, per set: images, identities, cameras and
    visible / infrared images."""
    sets = {}
    for name, rows in dataset.sets.items():
        sets[name] = {"images": int(len(rows)), "identities": int(len(np.unique(dataset.person[rows]))),
                      "cameras": int(len(np.unique(dataset.camera[rows]))),
                      "visible": int(np.sum(dataset.modality[rows] == VISIBLE)),
                      "infrared": int(np.sum(dataset.modality[rows] == INFRARED))}
    return {"layout": dataset.layout, "root": str(dataset.root), "images": len(dataset), "sets": sets}
