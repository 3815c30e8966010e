"""Training hyperparameters shared by every method, with a range for every number, and `--set`
key=value overrides.

Every bound is checked before any data is read, cached or written: an absurd value (an image size
of 100000 x 100000, a NaN learning rate) is refused with the allowed range, never allocated.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import annotated_types
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, ValidationError, model_validator

from atzoo.errors import AtzooError

BACKBONE_PREFIX = "backbone."
BACKBONE_SHORTCUTS = ("pretrained",)
"""Backbone arguments that `--set` also takes without the prefix (``--set pretrained=PATH``)."""
MAX_EPOCHS = 10_000
MAX_SIDE = 1024
MIN_SIDE = 16
MAX_BATCH = 16_384


def _not_a_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    return value


Number = Annotated[float, BeforeValidator(_not_a_boolean)]
Probability = Annotated[Number, Field(ge=0, le=1)]
ImageSide = Annotated[StrictInt, Field(ge=MIN_SIDE, le=MAX_SIDE)]
AreaShare = Annotated[Number, Field(gt=0, lt=1)]
AspectRatio = Annotated[Number, Field(gt=0, le=100)]
Milestone = Annotated[StrictInt, Field(ge=1, le=MAX_EPOCHS)]
LrMultiplier = Annotated[Number, Field(ge=0, le=1000)]
Pattern = Annotated[str, Field(min_length=1, max_length=200)]


class LossOptimizer(BaseModel):
    """A separate optimizer for the parameters of one loss (a center loss's centres, say). It keeps its
    own constant learning rate: the run's schedule and lr multipliers do not apply to it."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: Number = Field(0.5, gt=0, le=10)
    momentum: Number = Field(0.0, ge=0, lt=1)
    weight_decay: Number = Field(0.0, ge=0, le=1)
    undo_loss_weight: bool = Field(
        False, description="divide the loss parameters' gradient by the loss term's weight before the step, so "
                           "they train as if the loss were unweighted (BoT's centres)")


class TrainConfig(BaseModel):
    """Every knob the shared runner has. A method's recipe sets defaults; users override them."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # optimisation
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: Number = Field(0.01, gt=0, le=10)
    momentum: Number = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: Number = Field(5e-4, ge=0, le=1)
    no_weight_decay: tuple[Pattern, ...] = Field(
        ("pos_embed", "cls_token", "norm", "bias"), max_length=100,
        description="parameter-name substrings trained without weight decay")
    lr_multipliers: dict[Pattern, LrMultiplier] = Field(
        default_factory=dict, max_length=100,
        description="parameter-name substring -> learning-rate factor (the first matching substring wins)")
    loss_optimizers: dict[Pattern, LossOptimizer] = Field(
        default_factory=dict, max_length=20,
        description="loss name -> its own optimizer for that loss's parameters, e.g. "
                    "{'center': {'optimizer': 'sgd', 'lr': 0.5}}")
    grad_clip: Number | None = Field(None, gt=0, le=1e6)
    # schedule
    epochs: StrictInt = Field(10, ge=1, le=MAX_EPOCHS)
    iters_per_epoch: StrictInt | None = Field(None, ge=1, le=1_000_000, description="None: one pass over the train set")
    warmup_epochs: StrictInt = Field(0, ge=0, le=MAX_EPOCHS)
    warmup_factor: Number = Field(0.1, gt=0, le=1)
    schedule: Literal["cosine", "constant", "multistep"] = "cosine"
    min_lr_factor: Number = Field(0.002, ge=0, le=1, description="cosine: the factor reached at the end")
    milestones: tuple[Milestone, ...] = Field(
        (), max_length=100, description="multistep: epochs (1-based: after that many epochs) where the lr is "
                                        "multiplied by gamma")
    gamma: Number = Field(0.1, gt=0, le=1, description="multistep: factor applied at each milestone")
    # batches
    num_persons: StrictInt = Field(8, ge=1, le=1024, description="P persons per batch")
    num_instances: StrictInt = Field(4, ge=1, le=256, description="K images per person")
    modality_balanced: bool = Field(False, description="K/2 RGB + K/2 IR per person when it has both")
    # images and augmentation
    image_size: tuple[ImageSide, ImageSide] = (256, 128)
    pad: StrictInt = Field(10, ge=0, le=256, description="zero padding before the random crop back to image_size")
    flip: Probability = 0.5
    erasing: Probability = 0.5
    erasing_scale: tuple[AreaShare, AreaShare] = Field(
        (0.02, 0.33), description="random erasing: (min, max) share of the image area erased")
    erasing_ratio: tuple[AspectRatio, AspectRatio] = Field(
        (0.3, 3.3), description="random erasing: (min, max) aspect ratio (height / width) of the rectangle")
    # running
    amp: bool = Field(True, description="bf16 autocast on CUDA; ignored on CPU")
    seed: StrictInt = Field(0, ge=0, le=2**31 - 1)
    eval_batch_size: StrictInt = Field(128, ge=1, le=65_536)
    num_workers: StrictInt = Field(2, ge=0, le=64, description="data-loader processes that decode images when "
                                   "cache is off (cached batches are read in the main process)")
    cache: bool = Field(True, description="decode and resize images once into a local cache")
    checkpoint_every: StrictInt = Field(1, ge=1, le=MAX_EPOCHS, description="epochs between checkpoints")

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.batch_size > MAX_BATCH:
            raise ValueError(f"num_persons x num_instances = {self.batch_size} images per batch; allowed: at most "
                             f"{MAX_BATCH}")
        if self.pad > min(self.image_size):
            raise ValueError(f"pad={self.pad} is larger than the image ({self.image_size[0]}x{self.image_size[1]})")
        for name in ("erasing_scale", "erasing_ratio"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"{name}={[low, high]}: expected (min, max) with min <= max")
        if list(self.milestones) != sorted(set(self.milestones)):
            raise ValueError(f"milestones={list(self.milestones)}: expected strictly increasing epochs")
        if self.schedule == "multistep" and not self.milestones:
            raise ValueError("schedule 'multistep' needs milestones (epochs where the lr is multiplied by gamma)")
        return self

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


def split_overrides(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`backbone.X=...` keys (and the shortcuts, `pretrained=...`) go to the backbone's factory;
    every other key is a training setting."""
    backbone = {k[len(BACKBONE_PREFIX):]: v for k, v in overrides.items() if k.startswith(BACKBONE_PREFIX)}
    backbone.update((k, v) for k, v in overrides.items() if k in BACKBONE_SHORTCUTS)
    train = {k: v for k, v in overrides.items() if not k.startswith(BACKBONE_PREFIX) and k not in BACKBONE_SHORTCUTS}
    return backbone, train


def _bounds_text(metadata: list[Any]) -> str:
    metadata = [part for item in metadata for part in (getattr(item, "metadata", None) or [item])]
    low = next((f">= {m.ge}" for m in metadata if isinstance(m, annotated_types.Ge)), None)
    low = low or next((f"> {m.gt}" for m in metadata if isinstance(m, annotated_types.Gt)), None)
    high = next((f"<= {m.le}" for m in metadata if isinstance(m, annotated_types.Le)), None)
    high = high or next((f"< {m.lt}" for m in metadata if isinstance(m, annotated_types.Lt)), None)
    return " and ".join(part for part in (low, high) if part)


def _annotation_bounds(annotation: Any) -> str:
    """The bounds of an Annotated type, looking inside tuples, unions and dict values."""
    metadata = list(getattr(annotation, "__metadata__", ()))
    text = _bounds_text(metadata)
    if text:
        return text
    for argument in getattr(annotation, "__args__", ()):
        text = _annotation_bounds(argument)
        if text:
            return text
    return ""


def allowed_range(field_name: str, model: type[BaseModel] = TrainConfig) -> str:
    """The allowed range of a numeric setting in words (``">= 16 and <= 1024"``), or ``""``."""
    field = model.model_fields.get(field_name)
    if field is None:
        return ""
    return _bounds_text(list(field.metadata)) or _annotation_bounds(field.annotation)


def _bounds_of_location(location: tuple[Any, ...], model: type[BaseModel]) -> str:
    if not location:
        return ""
    if model is TrainConfig and location[0] == "loss_optimizers" and len(location) >= 3:
        return allowed_range(str(location[2]), LossOptimizer)
    return allowed_range(str(location[0]), model)


def describe_validation_error(error: ValidationError, model: type[BaseModel] = TrainConfig) -> str:
    """One line per problem: the setting, the value given, what is wrong and the allowed range."""
    problems = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "settings"
        message = item["msg"].removeprefix("Value error, ")
        bounds = _bounds_of_location(item["loc"], model)
        given = f"={item.get('input')!r}" if item["loc"] else ""
        problems.append(f"{location}{given}: {message}" + (f" (allowed: {bounds})" if bounds else ""))
    return "; ".join(problems)


def train_config_problems(*layers: dict[str, Any]) -> list[str]:
    """What is wrong with the merged layers as training settings ([] when they are valid)."""
    try:
        build_train_config(*layers)
    except AtzooError as error:
        return [str(error)]
    return []


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
        raise AtzooError(f"invalid training setting: {describe_validation_error(error)}") from None
