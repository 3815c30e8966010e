"""The AT-USTC benchmark's fixed facts: scenarios, split flags, cameras and modalities.

Everything here restates the benchmark definition so that the data layer, the evaluation and
the runner share one source. Scenario order is also the order of a six-head model's outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

PROTOCOL_VERSION = "1.0"
EVALUATOR_VERSION = "atzoo-1.0"
"""The evaluator that computed a result: bumps whenever a metric's computation changes. The paper's
rows were computed by the authors' code, recorded as ``OFFICIAL_EVALUATOR``."""
OFFICIAL_EVALUATOR = "official"

TASK_FAMILIES = ("Tr-ReID", "CC-ReID", "CM-ReID", "AT-ReID", "other")
"""The task families of the paper's results table (traditional, clothes-changing, cross-modality,
anytime Re-ID) and "other": a method's `task_family` and a leaderboard entry's are one of them."""

RGB = 1
IR = 2
RGB_CAMERAS = tuple(range(1, 9))
IR_CAMERAS = tuple(range(9, 17))
CAMERAS = RGB_CAMERAS + IR_CAMERAS

TRAIN_FLAG = 0
VAL_FLAG = 1
UNUSED_TEST_FLAG = 10
FLAGS = tuple(range(0, 11))
TEST_FLAGS = tuple(range(2, 11))
"""The test split: the query and gallery flags 2-9 and flag 10 (test images no scenario uses)."""


def modality_of_camera(camera: int) -> int:
    """1 (RGB) for cameras 1-8, 2 (IR) for cameras 9-16."""
    if camera not in CAMERAS:
        raise ValueError(f"camera {camera} is outside 1-16")
    return RGB if camera <= 8 else IR


def modalities_of_cameras(cameras: np.ndarray) -> np.ndarray:
    """`modality_of_camera` for an array of cameras (assumed already checked to be in 1-16)."""
    import numpy as np  # here, so that the plugin contract (which imports this module) stays light

    return np.where(np.asarray(cameras) <= RGB_CAMERAS[-1], RGB, IR).astype(np.int64)


@dataclass(frozen=True)
class QueryGalleryPair:
    """The short-term (ST) or long-term (LT) query/gallery pair of the official protocol."""

    name: str
    query_flags: tuple[int, ...]
    gallery_flags: tuple[int, ...]


ST_PAIR = QueryGalleryPair("ST", query_flags=(2, 4), gallery_flags=(6, 8))
LT_PAIR = QueryGalleryPair("LT", query_flags=(3, 5), gallery_flags=(7, 9))
PAIRS = (ST_PAIR, LT_PAIR)


@dataclass(frozen=True)
class Scenario:
    """One of the six AT-ReID scenarios.

    modality: "vm" (RGB query and RGB gallery), "im" (IR and IR) or "cm" (cross-modality only).
    clothes: "sc" (same clothes) or "cc" (clothes changed).
    """

    index: int
    name: str
    modality: str
    clothes: str
    pair: QueryGalleryPair

    @property
    def time(self) -> str:
        return self.name.split("-")[0]

    @property
    def term(self) -> str:
        return self.name.split("-")[1]


SCENARIOS = (
    Scenario(0, "DT-ST", "vm", "sc", ST_PAIR),
    Scenario(1, "DT-LT", "vm", "cc", LT_PAIR),
    Scenario(2, "NT-ST", "im", "sc", ST_PAIR),
    Scenario(3, "NT-LT", "im", "cc", LT_PAIR),
    Scenario(4, "AD-ST", "cm", "sc", ST_PAIR),
    Scenario(5, "AD-LT", "cm", "cc", LT_PAIR),
)
SCENARIO_NAMES = tuple(s.name for s in SCENARIOS)
ANY_TIME = "Any-Time"

# Per-scenario query and gallery flags (the all-day sets are unions of day and night).
QUERY_FLAGS = {"DT-ST": (2,), "DT-LT": (3,), "NT-ST": (4,), "NT-LT": (5,), "AD-ST": (2, 4), "AD-LT": (3, 5)}
GALLERY_FLAGS = {"DT-ST": (6,), "DT-LT": (7,), "NT-ST": (8,), "NT-LT": (9,), "AD-ST": (6, 8), "AD-LT": (7, 9)}
GALLERY_SET_FLAGS = tuple(sorted({flag for flags in GALLERY_FLAGS.values() for flag in flags}))
"""Every gallery flag (6-9)."""
SCENARIO_FLAGS = tuple(sorted({flag for flags in (*QUERY_FLAGS.values(), *GALLERY_FLAGS.values()) for flag in flags}))
"""The flags some scenario's queries or gallery use (2-9): the test images an evaluation embeds."""

MIXED_TEST_HEAD = 5
"""The scenario-agnostic mixed test uses one feature for every case: the AD-LT output."""
