"""``cross_metrics.json``: the zero-shot cross-dataset results `atzoo evaluate --cross` writes.

Metrics are fractions (0-1), as in ``metrics.json``. Per dataset: each setting's mean over its
trials with the spread (standard deviation), the output (head) used, the valid queries and the
trials; the headline figure; and the provenance (root, release, images per set, seed). The file
also names the model (source, kind, method, weights sha256) and gives the paper's average.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field

from atzoo.formats.model import FormatModel, read_model, validate_data, write_model
from atzoo.protocol import SCENARIO_NAMES

CROSS_METRICS = "cross_metrics.json"
Fraction = Field(ge=0.0, le=1.0, strict=True)


class FigureMetrics(FormatModel):
    FORMAT_NAME = "cross-dataset figure"

    rank1: float = Fraction
    rank5: float = Fraction
    rank10: float = Fraction
    rank20: float = Fraction
    mAP: float = Fraction
    mINP: float = Fraction


class SettingResult(FigureMetrics):
    FORMAT_NAME = "cross-dataset setting result"

    head: int = Field(ge=0, strict=True, description="The model output that answered this setting.")
    scenario: Literal[SCENARIO_NAMES]  # type: ignore[valid-type]
    spread: dict[str, float] = Field(description="Standard deviation of each metric over the trials.")
    queries: float = Field(ge=0, strict=True, description="Valid queries (their mean over the trials).")
    trials: int = Field(ge=1, strict=True)


class Headline(FigureMetrics):
    FORMAT_NAME = "cross-dataset headline"

    settings: list[str] = Field(min_length=1, description="The settings averaged into the dataset's figure.")


class DatasetResult(FormatModel):
    FORMAT_NAME = "cross-dataset result"

    protocol_version: str = Field(min_length=1)
    layout: str = Field(min_length=1)
    title: str
    outputs: int = Field(ge=1, strict=True, description="How many outputs the model has.")
    seed: int = Field(ge=0, strict=True)
    settings: dict[str, SettingResult]
    absent_settings: list[str] = Field(description="Settings whose sets the root lacks (CUHK03 box kinds).")
    headline: Headline | None
    root: str
    release: Literal["synthetic", "user copy"]
    images: int = Field(ge=0, strict=True)
    sets: dict[str, int]


class PaperAverage(FormatModel):
    FORMAT_NAME = "paper average"

    rank1: float | None = Field(ge=0.0, le=1.0, strict=True)
    mAP: float | None = Field(ge=0.0, le=1.0, strict=True)
    datasets: list[str]
    missing: list[str]


class ModelSource(FormatModel):
    FORMAT_NAME = "model source"

    source: str
    kind: Literal["run", "package"]
    method: str | None
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    declared_heads: dict[str, str | int] | None


class CrossMetricsFile(FormatModel):
    FORMAT_NAME = "cross-dataset results file"
    FORMAT_VERSION = 1

    format_version: Literal[1] = 1
    cross_protocol_version: str = Field(min_length=1)
    evaluator_version: str = Field(min_length=1)
    datasets: dict[str, DatasetResult]
    paper_average: PaperAverage
    model: ModelSource


def read_cross_metrics(path: str | os.PathLike[str]) -> CrossMetricsFile:
    return read_model(path, CrossMetricsFile)


def cross_metrics_model(data: dict[str, Any]) -> CrossMetricsFile:
    """The evaluation's result as this format (the current version), checked."""
    return validate_data({"format_version": CrossMetricsFile.FORMAT_VERSION, **data}, CrossMetricsFile,
                         "the cross-dataset results")


def write_cross_metrics(path: str | os.PathLike[str], results: CrossMetricsFile) -> None:
    write_model(path, results)
