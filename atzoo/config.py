"""Training hyperparameters shared by every method, and `--set key=value` overrides."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from atzoo.errors import AtzooError


class TrainConfig(BaseModel):
    """Every knob the shared runner has. A method's recipe sets defaults; users override them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # optimisation
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(5e-4, ge=0)
    no_weight_decay: tuple[str, ...] = Field(
        ("pos_embed", "cls_token", "norm", "bias"),
        description="parameter-name substrings trained without weight decay")
    lr_multipliers: dict[str, float] = Field(
        default_factory=dict, description="parameter-name substring -> learning-rate factor")
    grad_clip: float | None = Field(None, gt=0)
    # schedule
    epochs: int = Field(10, ge=1)
    iters_per_epoch: int | None = Field(None, ge=1, description="None: one pass over the train set")
    warmup_epochs: int = Field(0, ge=0)
    warmup_factor: float = Field(0.1, gt=0, le=1)
    schedule: Literal["cosine", "constant"] = "cosine"
    min_lr_factor: float = Field(0.002, ge=0, le=1)
    # batches
    num_persons: int = Field(8, ge=1, description="P persons per batch")
    num_instances: int = Field(4, ge=1, description="K images per person")
    modality_balanced: bool = Field(False, description="K/2 RGB + K/2 IR per person when it has both")
    # images and augmentation
    image_size: tuple[int, int] = (256, 128)
    pad: int = Field(10, ge=0)
    flip: float = Field(0.5, ge=0, le=1)
    erasing: float = Field(0.5, ge=0, le=1)
    # running
    amp: bool = Field(True, description="bf16 autocast on CUDA; ignored on CPU")
    seed: int = 0
    eval_batch_size: int = Field(128, ge=1)
    num_workers: int = Field(2, ge=0)
    cache: bool = Field(True, description="decode and resize images once into a local cache")
    checkpoint_every: int = Field(1, ge=1, description="epochs between checkpoints")

    @property
    def batch_size(self) -> int:
        return self.num_persons * self.num_instances


def parse_value(raw: str) -> Any:
    """A `--set` value: JSON when it parses (numbers, booleans, lists, null), else the string."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        lowered = raw.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        if lowered in ("none", "null"):
            return None
        return raw


def parse_overrides(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """`["lr=0.01", "image_size=[128,64]"]` -> `{"lr": 0.01, "image_size": [128, 64]}`."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise AtzooError(f"--set expects key=value, got {pair!r}")
        overrides[key.strip()] = parse_value(raw)
    return overrides


def build_train_config(*layers: dict[str, Any]) -> TrainConfig:
    """Merge layers (method defaults, then user overrides) into a validated config."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    unknown = sorted(set(merged) - set(TrainConfig.model_fields))
    if unknown:
        raise AtzooError(f"unknown training setting(s) {', '.join(unknown)}; "
                         f"valid keys: {', '.join(sorted(TrainConfig.model_fields))}")
    try:
        return TrainConfig(**merged)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}={e.get('input')!r}: {e['msg']}" for e in error.errors())
        raise AtzooError(f"invalid training setting: {problems}") from None
