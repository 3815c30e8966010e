"""The metadata of atzoo's safetensors files: a training checkpoint's header (format, epoch, step,
optimizer state that is not a tensor) and a run's final weights' header (format, method).

Safetensors metadata is a flat map of strings, so numbers are written as decimal strings and the
optimizer state as JSON text; reading parses them strictly and checks them as any other format.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from atzoo.errors import FormatError
from atzoo.formats.jsonfile import dump_json, parse_json
from atzoo.formats.model import FormatModel, Record, validate_data
from atzoo.formats.recipe import QualifiedName

MAX_EPOCH = 100_000
MAX_STEP = 10**12


class OptimizerState(Record):
    """A torch optimizer's state dict without its tensors (those are tensors of the checkpoint)."""

    param_groups: list[dict[str, Any]] = Field(max_length=10_000)
    scalars: dict[str, dict[str, Any]]


class CheckpointMeta(FormatModel):
    FORMAT_NAME = "checkpoint"
    FORMAT_VERSION = 1
    VERSION_KEY = "format"
    VERSION_PREFIX = "atzoo-checkpoint-"

    format: Literal["atzoo-checkpoint-1"] = "atzoo-checkpoint-1"
    epoch: Annotated[int, Field(strict=True, ge=0, le=MAX_EPOCH)]
    step: Annotated[int, Field(strict=True, ge=0, le=MAX_STEP)]
    optimizer: OptimizerState


class WeightsMeta(FormatModel):
    """The header of a run's `model.safetensors` (and so of a package's weights)."""

    FORMAT_NAME = "model weights"
    FORMAT_VERSION = 1
    VERSION_KEY = "format"
    VERSION_PREFIX = "atzoo-model-"

    format: Literal["atzoo-model-1"] = "atzoo-model-1"
    method: QualifiedName


def _number(text: str) -> int | str:
    """A decimal string as an int; anything else stays a string, which validation then refuses by name."""
    return int(text) if text.isdigit() and len(text) <= 15 else text


def checkpoint_metadata(meta: CheckpointMeta) -> dict[str, str]:
    """The safetensors header strings of a checkpoint."""
    return {"format": meta.format, "epoch": str(meta.epoch), "step": str(meta.step),
            "optimizer": dump_json(meta.optimizer.model_dump(mode="json"), "checkpoint optimizer state").strip()}


def parse_checkpoint_metadata(metadata: dict[str, str] | None, source: str) -> CheckpointMeta:
    """A checkpoint's header checked; `source` (the file) starts every error."""
    data: dict[str, Any] = dict(metadata or {})
    if not data:
        raise FormatError(f"{source} has no atzoo metadata; it is not a checkpoint written by atzoo", file=source)
    for key in ("epoch", "step"):
        if isinstance(data.get(key), str):
            data[key] = _number(data[key])
    if isinstance(data.get("optimizer"), str):
        data["optimizer"] = parse_json(data["optimizer"], f"{source} (metadata 'optimizer')")
    return validate_data(data, CheckpointMeta, source)


def weights_metadata(method: str) -> dict[str, str]:
    return dict(WeightsMeta(method=method).model_dump(mode="json"))


def parse_weights_metadata(metadata: dict[str, str] | None, source: str) -> WeightsMeta:
    return validate_data(dict(metadata or {}), WeightsMeta, source)
