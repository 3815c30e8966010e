"""A run's ``metrics.json`` and a package's ``results.json``: six-scenario results with provenance.

Both files hold the same thing, aggregates only (fractions in [0, 1] and query counts, never an
image path or a per-query rank), and say where the numbers come from:

- ``provenance.dataset``: the release (``403k`` only when the data has the official release's
  counts; ``synthetic`` for atzoo's generated data; ``custom`` for any other AT-USTC-format
  collection), the fingerprint of the protocol's file list and labels (relative paths, sizes and
  labels; never image bytes) and the number of images;
- ``provenance.weights_sha256``: the sha256 of the exact weights file evaluated;
- the evaluator and protocol versions and the date of the evaluation.

Any-Time is required and must be the plain mean of the six scenarios: a results file edited by
hand, or with Any-Time deleted, is refused rather than checked less.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from atzoo.formats.cross_metrics import FigureMetrics
from atzoo.formats.entry import RELEASES, SHA256_PATTERN
from atzoo.formats.jsonfile import write_json
from atzoo.formats.model import FormatModel, read_model, validate_data
from atzoo.protocol import ANY_TIME, SCENARIO_NAMES

METRIC_NAMES = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")
ANY_TIME_TOLERANCE = 1e-6


class ScenarioResult(FigureMetrics):
    """One scenario's (or group's) metrics as fractions, and its number of valid queries."""

    FORMAT_NAME = "scenario result"

    queries: int | None = Field(default=None, ge=0, strict=True)

    @model_validator(mode="after")
    def _cmc_never_decreases(self) -> ScenarioResult:
        ranks = [self.rank1, self.rank5, self.rank10, self.rank20]
        if any(high < low for low, high in zip(ranks, ranks[1:])):
            raise ValueError(f"the CMC curve decreases ({', '.join(f'{v:.4f}' for v in ranks)}); "
                             f"rank1 <= rank5 <= rank10 <= rank20")
        return self


class DatasetProvenance(FormatModel):
    FORMAT_NAME = "dataset provenance"

    release: Literal[RELEASES]  # type: ignore[valid-type]
    fingerprint: str = Field(pattern=SHA256_PATTERN, description="sha256 over the sorted (relative path, size, "
                                                                   "person, clothes, camera, modality, flag) rows")
    image_count: int = Field(ge=0, strict=True, description="How many images the root holds.")


class Provenance(FormatModel):
    FORMAT_NAME = "results provenance"

    dataset: DatasetProvenance
    weights_sha256: str = Field(pattern=SHA256_PATTERN)
    evaluator_version: str = Field(min_length=1)
    protocol_version: str = Field(min_length=1)
    date: dt.datetime


class Results(FormatModel):
    """The evaluation of one weights file on one dataset."""

    FORMAT_NAME = "results file"
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, populate_by_name=True)

    format_version: Literal[1] = 1
    protocol_version: str = Field(min_length=1)
    dt_st: ScenarioResult = Field(alias="DT-ST")
    dt_lt: ScenarioResult = Field(alias="DT-LT")
    nt_st: ScenarioResult = Field(alias="NT-ST")
    nt_lt: ScenarioResult = Field(alias="NT-LT")
    ad_st: ScenarioResult = Field(alias="AD-ST")
    ad_lt: ScenarioResult = Field(alias="AD-LT")
    any_time: ScenarioResult = Field(alias="Any-Time")
    mixed: dict[str, ScenarioResult] | None = None
    provenance: Provenance

    def scenario(self, name: str) -> ScenarioResult:
        return getattr(self, name.lower().replace("-", "_"))

    @model_validator(mode="after")
    def _any_time_is_the_mean(self) -> Results:
        for metric in METRIC_NAMES:
            mean = sum(getattr(self.scenario(name), metric) for name in SCENARIO_NAMES) / len(SCENARIO_NAMES)
            claimed = getattr(self.any_time, metric)
            if abs(claimed - mean) > ANY_TIME_TOLERANCE:
                raise ValueError(f"{ANY_TIME} {metric} = {claimed} is not the mean of the six scenarios ({mean:.6f}); "
                                 f"the results were edited")
        return self

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def results_from_evaluation(metrics: dict[str, Any], provenance: Provenance) -> Results:
    """The evaluator's output (six scenarios, Any-Time, mixed) with its provenance, as a checked model."""
    keep = {key: metrics[key] for key in (*SCENARIO_NAMES, ANY_TIME, "mixed", "protocol_version") if key in metrics}
    data = {"format_version": Results.FORMAT_VERSION, **keep, "provenance": provenance.model_dump(mode="json")}
    return validate_data(data, Results, "the evaluation")


def read_results(path: str | os.PathLike) -> Results:
    """A ``metrics.json`` or ``results.json``, checked; errors name the file and the field."""
    return read_model(path, Results)


def write_results(path: str | os.PathLike, results: Results) -> None:
    write_json(path, results.to_json())
