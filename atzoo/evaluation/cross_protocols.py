"""Each public dataset's own evaluation protocol, and which AT-USTC head answers it.

A `Setting` is one reported figure of a dataset: which set is the query and which the gallery,
which cameras take part, which same-person gallery images are not valid targets, whether the
gallery is sampled one image per person and camera (single-shot) in seeded trials, and which
AT-USTC scenario's feature is used (the benchmark authors' mapping: the DT-ST feature for
traditional and same-clothes settings, DT-LT for clothes-changing ones, AD-ST for visible-infrared
ones). A dataset's headline figure is the mean of its `headline` settings; the paper's cross-
dataset average is the mean of `PAPER_AVERAGE`'s headline figures. docs/generalization.md says
where each fact comes from.
"""

from __future__ import annotations

from dataclasses import dataclass

from atzoo.errors import FeaturesError
from atzoo.protocol import SCENARIO_NAMES

CROSS_PROTOCOL_VERSION = "cross-1.0"
DEFAULT_TRIALS = 10
PAPER_AVERAGE = ("market1501", "cuhk03", "sysu-mm01", "prcc", "ltcc")
"""The datasets averaged in the paper's cross-dataset table (rank-1 and mAP)."""
REPORTED_AVERAGES = {"Baseline": {"rank1": 31.47, "mAP": 24.16}, "Uni-AT": {"rank1": 39.81, "mAP": 31.76}}
"""The paper's reported average R1 / mAP (%) over `PAPER_AVERAGE`, trained on AT-USTC."""


@dataclass(frozen=True)
class Setting:
    """One evaluation setting of a dataset.

    clothes: "any" (no clothes rule), "sc" (same-person gallery images in other clothes are not
        valid targets) or "cc" (those in the same clothes are not).
    same_camera: same-person gallery images from the query's camera are not valid targets.
    cameras: only these cameras take part, in query and gallery (None: all).
    gallery_cameras: only these gallery cameras (None: all).
    excluded_pairs: (query camera, gallery camera) pairs never compared: every such gallery image
        is left out of that query's ranking, whoever it shows.
    single_shot: each trial's gallery is one random image per (person, camera).
    trials: the number of seeded trials (1: deterministic, no sampling).
    per_trial_sets: the query and gallery set names hold "{trial}" (RegDB's ten splits).
    """

    name: str
    query: str
    gallery: str
    scenario: str
    clothes: str = "any"
    same_camera: bool = True
    cameras: tuple[int, ...] | None = None
    gallery_cameras: tuple[int, ...] | None = None
    excluded_pairs: tuple[tuple[int, int], ...] = ()
    single_shot: bool = False
    trials: int = 1
    per_trial_sets: bool = False

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIO_NAMES or self.clothes not in ("any", "sc", "cc"):
            raise ValueError(f"setting {self.name}: bad scenario {self.scenario!r} or clothes {self.clothes!r}")

    @property
    def randomised(self) -> bool:
        return self.single_shot or self.per_trial_sets

    def set_names(self, trial: int) -> tuple[str, str]:
        """Query and gallery set names of `trial` (0-based)."""
        if self.per_trial_sets:
            return self.query.format(trial=trial + 1), self.gallery.format(trial=trial + 1)
        return self.query, self.gallery


@dataclass(frozen=True)
class DatasetProtocol:
    layout: str
    title: str
    settings: tuple[Setting, ...]
    headline: tuple[str, ...]

    def setting(self, name: str) -> Setting:
        for setting in self.settings:
            if setting.name == name:
                return setting
        raise FeaturesError(f"{self.title} has no setting {name!r} (settings: "
                            f"{', '.join(s.name for s in self.settings)})")


def _regdb(name: str, query: str, gallery: str) -> Setting:
    return Setting(name, f"trial{{trial}}/test-{query}", f"trial{{trial}}/test-{gallery}", "AD-ST",
                   trials=10, per_trial_sets=True)


PROTOCOLS: dict[str, DatasetProtocol] = {p.layout: p for p in (
    DatasetProtocol("market1501", "Market-1501", (Setting("single-query", "query", "gallery", "DT-ST"),),
                    ("single-query",)),
    DatasetProtocol("cuhk03", "CUHK03", (Setting("detected", "detected/query", "detected/gallery", "DT-ST"),
                                         Setting("labeled", "labeled/query", "labeled/gallery", "DT-ST")),
                    ("detected",)),
    DatasetProtocol("msmt17", "MSMT17", (Setting("single-query", "query", "gallery", "DT-ST"),),
                    ("single-query",)),
    DatasetProtocol("sysu-mm01", "SYSU-MM01", (
        Setting("all-search", "query", "gallery", "AD-ST", excluded_pairs=((3, 2),), single_shot=True,
                trials=DEFAULT_TRIALS),
        Setting("indoor-search", "query", "gallery", "AD-ST", gallery_cameras=(1, 2), excluded_pairs=((3, 2),),
                single_shot=True, trials=DEFAULT_TRIALS)), ("all-search",)),
    DatasetProtocol("regdb", "RegDB", (_regdb("visible-to-thermal", "visible", "thermal"),
                                       _regdb("thermal-to-visible", "thermal", "visible")),
                    ("visible-to-thermal", "thermal-to-visible")),
    DatasetProtocol("llcm", "LLCM", (
        Setting("visible-to-infrared", "test-visible", "test-infrared", "AD-ST", single_shot=True,
                trials=DEFAULT_TRIALS),
        Setting("infrared-to-visible", "test-infrared", "test-visible", "AD-ST", single_shot=True,
                trials=DEFAULT_TRIALS)), ("visible-to-infrared", "infrared-to-visible")),
    DatasetProtocol("prcc", "PRCC", (Setting("same-clothes", "query-same", "gallery", "DT-ST", clothes="sc"),
                                     Setting("clothes-changing", "query-changed", "gallery", "DT-LT", clothes="cc")),
                    ("clothes-changing",)),
    DatasetProtocol("ltcc", "LTCC", (Setting("general", "query", "gallery", "DT-LT"),
                                     Setting("clothes-changing", "query", "gallery", "DT-LT", clothes="cc")),
                    ("clothes-changing",)),
    DatasetProtocol("deepchange", "DeepChange", (Setting("test", "query", "gallery", "DT-LT", clothes="cc",
                                                         same_camera=False),), ("test",)),
    DatasetProtocol("vc-clothes", "VC-Clothes", (
        Setting("general", "query", "gallery", "DT-ST"),
        Setting("same-clothes", "query", "gallery", "DT-ST", cameras=(2, 3)),
        Setting("clothes-changing", "query", "gallery", "DT-LT", cameras=(3, 4))), ("clothes-changing",)),
)}


def get_protocol(layout: str) -> DatasetProtocol:
    protocol = PROTOCOLS.get(layout)
    if protocol is None:
        raise FeaturesError(f"no cross-dataset protocol for {layout!r}; known: {', '.join(PROTOCOLS)}")
    return protocol


def protocol_set_names(protocol: DatasetProtocol, trials: int | None = None) -> list[str]:
    """Every set some setting of `protocol` reads."""
    names: list[str] = []
    for setting in protocol.settings:
        for trial in range(trial_count(setting, trials)):
            names.extend(setting.set_names(trial))
    return list(dict.fromkeys(names))


def trial_count(setting: Setting, trials: int | None) -> int:
    """The setting's trials, or `trials` for a randomised setting when given (at least 1)."""
    if trials is not None and trials < 1:
        raise FeaturesError(f"the trial count must be at least 1, got {trials}")
    if not setting.randomised or trials is None:
        return setting.trials
    if setting.per_trial_sets and trials > setting.trials:
        raise FeaturesError(f"setting {setting.name} has {setting.trials} fixed trials; {trials} were asked for")
    return trials


def head_index(layout: str, setting: Setting, num_outputs: int, declared: dict | None = None) -> int:
    """Which model output answers `setting`: the method's declared mapping (keys "LAYOUT/SETTING"
    or "LAYOUT", values a scenario name or an output index) first, else the one output of a
    single-feature model, else the output of the setting's scenario on a six-output model."""
    declared = declared or {}
    key = next((k for k in (f"{layout}/{setting.name}", layout) if k in declared), None)
    if key is not None:
        value = declared[key]
        index = SCENARIO_NAMES.index(value) if value in SCENARIO_NAMES else value
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < num_outputs:
            raise FeaturesError(f"the declared head {value!r} for {key} is not a scenario name or an output "
                                f"index below {num_outputs}")
        return index
    if num_outputs == 1:
        return 0
    if num_outputs == len(SCENARIO_NAMES):
        return SCENARIO_NAMES.index(setting.scenario)
    raise FeaturesError(f"the model has {num_outputs} outputs and its config declares no head for "
                        f"{layout}/{setting.name} (its scenario is {setting.scenario}); add "
                        f"\"cross_heads\": {{\"{layout}\": OUTPUT}} to the config")
