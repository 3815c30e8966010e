"""The leaderboard entry: one method x one weights file x one protocol version x one dataset release.

An entry is a JSON file under ``leaderboard/entries/`` validated by :class:`Entry`. Metrics are
percentages (0-100), as in the paper. ``reported`` holds what the submitter (or the paper) claims
for the six scenarios; Any-Time is never submitted, the project computes it as the plain mean.
``verified`` is written only by ``atzoo leaderboard verify`` (the shared runner), never by hand.

The schema is versioned (``schema_version``); :func:`entry_json_schema` exports it as JSON Schema
(``leaderboard/schema/entry-v1.schema.json``) for tools outside Python.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from functools import cached_property
from typing import Any, Literal

from pydantic import (BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError, field_validator,
                      model_validator)

from atzoo.errors import FormatError, LeaderboardError
from atzoo.formats.jsonfile import parse_json
from atzoo.protocol import ANY_TIME, SCENARIO_NAMES, TASK_FAMILIES

SCHEMA_VERSION = 1
SCHEMA_FILE = f"entry-v{SCHEMA_VERSION}.schema.json"
RELEASES = ("403k", "135k", "synthetic", "custom")
RANKED_RELEASES = ("403k", "135k", "synthetic")
"""The releases the board ranks and accepts submissions for; a ``custom`` release (any other
AT-USTC-format collection, named by its fingerprint) can be packaged and shown but not submitted."""
VERIFY_STATUSES = ("verified", "mismatch", "failed")
METRICS = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")
REQUIRED_METRICS = ("rank1", "mAP")
ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{1,79}$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
COMMIT_PATTERN = r"^[0-9a-f]{40}$"
REPO_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$"
URL_PATTERN = r"^https?://\S+$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Numbers are strict (no booleans, no numeric strings; an integer is a valid float) and finite.
# The models themselves stay lax so that dates are read from their ISO strings.
Percent = Field(ge=0.0, le=100.0, strict=True, allow_inf_nan=False)
OptionalPercent = Field(default=None, ge=0.0, le=100.0, strict=True, allow_inf_nan=False)


class ScenarioMetrics(_Strict):
    """One scenario's metrics in percent. The paper published Rank-1 and mAP only, so the other
    metrics may be absent (null); a runner evaluation fills all of them."""

    rank1: float = Percent
    rank5: float | None = OptionalPercent
    rank10: float | None = OptionalPercent
    rank20: float | None = OptionalPercent
    mAP: float = Percent
    mINP: float | None = OptionalPercent

    @model_validator(mode="after")
    def _cmc_never_decreases(self) -> ScenarioMetrics:
        ranks = [(name, getattr(self, name)) for name in ("rank1", "rank5", "rank10", "rank20")]
        present = [(name, value) for name, value in ranks if value is not None]
        for (low_name, low), (high_name, high) in zip(present, present[1:]):
            if high < low:
                raise ValueError(f"{high_name} ({high}) is below {low_name} ({low}); a CMC curve never decreases")
        return self


class Metrics(_Strict):
    """The six scenarios, each required. Any-Time is not a field: it is computed."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    dt_st: ScenarioMetrics = Field(alias="DT-ST")
    dt_lt: ScenarioMetrics = Field(alias="DT-LT")
    nt_st: ScenarioMetrics = Field(alias="NT-ST")
    nt_lt: ScenarioMetrics = Field(alias="NT-LT")
    ad_st: ScenarioMetrics = Field(alias="AD-ST")
    ad_lt: ScenarioMetrics = Field(alias="AD-LT")

    @model_validator(mode="before")
    @classmethod
    def _no_any_time(cls, data: Any) -> Any:
        if isinstance(data, dict) and ANY_TIME in data:
            raise ValueError(f"{ANY_TIME} is computed by the project as the mean of the six scenarios; "
                             f"remove it from the entry")
        return data

    def scenario(self, name: str) -> ScenarioMetrics:
        return getattr(self, name.lower().replace("-", "_"))

    def as_dict(self) -> dict[str, dict[str, float | None]]:
        return {name: self.scenario(name).model_dump() for name in SCENARIO_NAMES}

    @cached_property
    def any_time(self) -> dict[str, float | None]:
        """The plain mean of the six scenarios, per metric (None where a scenario lacks it); computed
        once per entry, since the app's table asks for it on every request."""
        result: dict[str, float | None] = {}
        for metric in METRICS:
            values = [getattr(self.scenario(name), metric) for name in SCENARIO_NAMES]
            result[metric] = None if any(v is None for v in values) else sum(values) / len(values)
        return result


CROSS_DATASETS = ("market1501", "cuhk03", "msmt17", "sysu-mm01", "regdb", "llcm", "prcc", "ltcc", "deepchange",
                  "vc-clothes")
"""The public datasets of the zero-shot cross-dataset test (``atzoo.data.layouts`` names)."""
CROSS_AVERAGE_DATASETS = ("market1501", "cuhk03", "sysu-mm01", "prcc", "ltcc")
"""The datasets the paper averages in its cross-dataset table."""


class CrossAverage(_Strict):
    rank1: float = Percent
    mAP: float = Percent


class CrossDatasetResults(_Strict):
    """Zero-shot results on public datasets, in percent: each dataset's headline figure (its
    protocol's headline settings, see docs/generalization.md) and/or the paper's average R1/mAP
    over ``CROSS_AVERAGE_DATASETS``. A paper row may give only the average; when every averaged
    dataset is present the average is computed from them (a given one must agree)."""

    protocol_version: str = Field(min_length=1)
    datasets: dict[str, ScenarioMetrics] = Field(default_factory=dict)
    average: CrossAverage | None = None

    @model_validator(mode="after")
    def _known_and_consistent(self) -> CrossDatasetResults:
        unknown = sorted(set(self.datasets) - set(CROSS_DATASETS))
        if unknown:
            raise ValueError(f"unknown cross-dataset name(s) {', '.join(unknown)}; known: {', '.join(CROSS_DATASETS)}")
        if not self.datasets and self.average is None:
            raise ValueError("cross-dataset results need per-dataset figures or the average")
        computed = self.computed_average()
        if computed is not None and self.average is not None:
            for metric in ("rank1", "mAP"):
                if abs(getattr(self.average, metric) - computed[metric]) > 0.011:
                    raise ValueError(f"average {metric} {getattr(self.average, metric)} is not the mean of the five "
                                     f"datasets' figures ({computed[metric]:.2f})")
        return self

    def computed_average(self) -> dict[str, float] | None:
        if not all(name in self.datasets for name in CROSS_AVERAGE_DATASETS):
            return None
        return {metric: sum(getattr(self.datasets[n], metric) for n in CROSS_AVERAGE_DATASETS)
                / len(CROSS_AVERAGE_DATASETS) for metric in ("rank1", "mAP")}

    def paper_average(self) -> dict[str, float] | None:
        """The average R1/mAP: computed from the five datasets when present, else as given."""
        computed = self.computed_average()
        if computed is not None:
            return computed
        return None if self.average is None else self.average.model_dump()


class Method(_Strict):
    name: str = Field(min_length=1, description="The method as shown on the board, e.g. 'Uni-AT'.")
    registered_name: str | None = Field(default=None, description="The runner's method name, e.g. 'uniat:uniat'.")
    plugin_distribution: str | None = Field(default=None, description="The pip distribution providing it.")
    plugin_version: str | None = None
    task_family: Literal[TASK_FAMILIES] = "other"  # type: ignore[valid-type]


class Links(_Strict):
    paper: str | None = Field(default=None, pattern=URL_PATTERN)
    code: str | None = Field(default=None, pattern=URL_PATTERN)


class Weights(_Strict):
    """The exact weights file: a Hub repo at a pinned commit, and its checksum."""

    repo: str = Field(pattern=REPO_PATTERN)
    revision: str = Field(pattern=COMMIT_PATTERN, description="A full 40-hex commit id, never a branch.")
    filename: str = "model.safetensors"
    sha256: str = Field(pattern=SHA256_PATTERN)
    num_params: int = Field(gt=0, strict=True, description="Read from the safetensors header.")

    @field_validator("filename")
    @classmethod
    def _safetensors_only(cls, value: str) -> str:
        if not value.endswith(".safetensors"):
            raise ValueError(f"weights must be a .safetensors file, got {value!r}")
        return value


class Model(_Strict):
    backbone: str = Field(min_length=1)
    pretraining: str = Field(default="none", description="e.g. 'ImageNet-1k', 'CLIP', 'none'.")
    extra_training_data: list[str] = Field(default_factory=list,
                                           description="Training data beyond AT-USTC's training split.")
    input_size: tuple[StrictInt, StrictInt] | None = Field(default=None, description="(height, width)")


class Disclosures(_Strict):
    """Test-time tricks. Entries that use any are left out of the default view."""

    re_ranking: StrictBool = False
    test_time_augmentation: list[str] = Field(default_factory=list, description="e.g. ['flip']")
    query_expansion: StrictBool = False
    notes: str = ""

    @property
    def uses_tricks(self) -> bool:
        return self.re_ranking or self.query_expansion or bool(self.test_time_augmentation)


class Dataset(_Strict):
    release: Literal[RELEASES]  # type: ignore[valid-type]
    protocol_version: str = Field(min_length=1)
    evaluator_version: str = Field(min_length=1)
    fingerprint: str | None = Field(
        default=None, pattern=SHA256_PATTERN,
        description="The dataset fingerprint (sha256 over every image's relative path, size and labels) of the "
                    "data the reported numbers were measured on. Verification compares it for synthetic entries.")

    @model_validator(mode="after")
    def _custom_has_fingerprint(self) -> Dataset:
        if self.release == "custom" and self.fingerprint is None:
            raise ValueError("a custom release is known only by its fingerprint: dataset.fingerprint is required")
        return self


class Verified(_Strict):
    """Written by the shared runner after re-evaluating the exact weights."""

    status: Literal[VERIFY_STATUSES]  # type: ignore[valid-type]
    date: dt.datetime
    tolerance: float = Field(ge=0.0, strict=True, allow_inf_nan=False,
                             description="Largest accepted |reported - verified|, percentage points.")
    metrics: Metrics | None = None
    max_difference: float | None = Field(default=None, ge=0.0, strict=True, allow_inf_nan=False)
    environment: dict[str, str] = Field(default_factory=dict)
    message: str = ""
    verifier: str = Field(default="", description="Who ran the verification: a name listed in the registry's "
                                                  "verifiers.json, whose key signed this block.")
    signature: str = Field(default="", description="base64 Ed25519 signature by the verifier's key over the entry id, "
                                                   "weights, dataset, reported metrics and this block (less the "
                                                   "signature); an unsigned block is refused.")
    cross_dataset: CrossDatasetResults | None = Field(
        default=None, description="The reported cross-dataset figures re-measured on the datasets the verifier has.")
    cross_unavailable: list[str] = Field(
        default_factory=list, description="Reported cross-dataset datasets the verifier did not have.")

    @model_validator(mode="after")
    def _metrics_unless_failed(self) -> Verified:
        if self.status != "failed" and self.metrics is None:
            raise ValueError(f"a {self.status!r} verification must carry the metrics it measured")
        return self


class Moderation(_Strict):
    flagged: StrictBool = False
    flag_reason: str = ""
    withdrawn: StrictBool = False
    superseded_by: str | None = Field(default=None, pattern=ID_PATTERN)

    @model_validator(mode="after")
    def _flag_has_reason(self) -> Moderation:
        if self.flagged and not self.flag_reason.strip():
            raise ValueError("a flagged entry needs a flag_reason")
        return self


class Entry(_Strict):
    schema_version: Literal[SCHEMA_VERSION]  # type: ignore[valid-type]
    id: str = Field(pattern=ID_PATTERN, description="Unique; also the file name (ID.json).")
    origin: Literal["paper", "submission"] = Field(
        description="'paper': numbers reported by a publication, no weights; 'submission': weights to verify.")
    method: Method
    links: Links = Field(default_factory=Links)
    submitter: str = Field(min_length=1)
    date: dt.date
    weights: Weights | None = None
    model: Model
    disclosures: Disclosures = Field(default_factory=Disclosures)
    dataset: Dataset
    reported: Metrics
    cross_dataset: CrossDatasetResults | None = Field(
        default=None, description="Reported zero-shot results on public datasets (optional).")
    verified: Verified | None = None
    moderation: Moderation = Field(default_factory=Moderation)

    @model_validator(mode="after")
    def _submission_has_weights(self) -> Entry:
        if self.origin == "submission" and self.weights is None:
            raise ValueError("a submission must name its weights (hub repo, pinned revision, sha256)")
        if self.origin == "paper" and self.verified is not None:
            raise ValueError("a paper's reported row has no weights, so it cannot carry a verified block")
        return self

    @property
    def any_time(self) -> dict[str, float | None]:
        return self.reported.any_time

    def to_json(self) -> dict[str, Any]:
        """The entry as written to its file; the optional cross-dataset fields only when used, so
        entries without them keep their exact bytes."""
        data = self.model_dump(mode="json", by_alias=True)
        if data["cross_dataset"] is None:
            del data["cross_dataset"]
        verified = data["verified"]
        if verified is not None and verified["cross_dataset"] is None and not verified["cross_unavailable"]:
            del verified["cross_dataset"], verified["cross_unavailable"]
        return data


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(entry)"


_SHOW_INPUT = {"finite_number", "float_type", "int_type", "bool_type"}


def validation_problems(error: ValidationError) -> list[str]:
    """Every problem pydantic found, one line each: ``field.path: message``."""
    problems = []
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] in _SHOW_INPUT:
            message += f", got {json_type_name(item['input'])} {json.dumps(item['input'])}"
        problems.append(f"{_location(item['loc'])}: {message}")
    return problems


def json_type_name(value: Any) -> str:
    """What a parsed JSON value was written as: 'an array', 'null', 'a string', ..."""
    names = ((bool, "a boolean"), (type(None), "null"), (list, "an array"), (str, "a string"),
             ((int, float), "a number"), (dict, "an object"))
    return next((name for kind, name in names if isinstance(value, kind)), type(value).__name__)


def entry_problems(data: Any) -> list[str]:
    """All schema problems of a parsed entry (an empty list when it is valid)."""
    if not isinstance(data, dict):
        return [f"an entry is a JSON object {{...}}, got {json_type_name(data)}"]
    try:
        Entry.model_validate(data)
    except ValidationError as error:
        return validation_problems(error)
    return []


def parse_entry(data: Any, source: str = "entry") -> Entry:
    """An :class:`Entry` from parsed JSON, or a :class:`LeaderboardError` listing every problem."""
    problems = entry_problems(data)
    if problems:
        raise LeaderboardError(f"{source} is not a valid leaderboard entry:\n  " + "\n  ".join(problems))
    return Entry.model_validate(data)


def parse_entry_text(text: str, source: str = "entry") -> Entry:
    """An :class:`Entry` from JSON text read strictly (duplicate keys, non-finite numbers and deep
    nesting refused), or a :class:`LeaderboardError`."""
    try:
        data = parse_json(text, source)
    except FormatError as error:
        raise LeaderboardError(str(error)) from None
    return parse_entry(data, source)


def entry_json_schema() -> dict[str, Any]:
    """The entry schema as JSON Schema (draft 2020-12), as committed in ``leaderboard/schema/``."""
    schema = Entry.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://atzoo.dev/schema/{SCHEMA_FILE}"
    schema["title"] = f"atzoo leaderboard entry, schema version {SCHEMA_VERSION}"
    return schema


def metrics_from_fractions(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Six scenarios of a runner's results (fractions, extra keys such as ``queries``) as an entry's
    ``reported``/``verified`` metrics: percentages rounded to 2 decimals, as the paper prints them."""
    metrics: dict[str, dict[str, float]] = {}
    for name in SCENARIO_NAMES:
        if name not in results:
            raise LeaderboardError(f"the results lack scenario {name!r}; all six are required")
        values = results[name]
        missing = [m for m in METRICS if m not in values]
        if missing:
            raise LeaderboardError(f"scenario {name} of the results lacks {', '.join(missing)}")
        metrics[name] = {m: round(100.0 * float(values[m]), 2) for m in METRICS}
    return metrics


_SLUG = re.compile(r"[^a-z0-9]+")


def slugify(text: str) -> str:
    """A lowercase id fragment: ``'CLIP-ReID (ViT-B)'`` -> ``'clip-reid-vit-b'``."""
    return _SLUG.sub("-", text.lower()).strip("-")
