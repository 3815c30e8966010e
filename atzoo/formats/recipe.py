"""The resolved recipe: a method's recipe with every default filled in, as a run's and a package's
`config.json` store it. With it (and the plugins it names) the model is rebuilt anywhere.

It is a part of those two formats, not a file of its own, so it carries no version: a change to it
is a new version of the run config and of the package config.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator
from typing_extensions import TypedDict

from atzoo.config import TrainConfig
from atzoo.formats.model import Record, validate_data

QUALIFIED_NAME = r"^[a-z0-9][a-z0-9_.-]*:[a-z0-9][a-z0-9_.-]*$"
MAX_HEADS = 6

ImageSide = Annotated[int, Field(strict=True, ge=16, le=1024, description="pixels")]
"""An image side a Re-ID model is trained or run at: 16..1024 pixels (AT-USTC's recipe: 256x128)."""
InputSize = tuple[ImageSide, ImageSide]
Mean = Annotated[float, Field(strict=True, ge=0.0, le=1.0)]
Std = Annotated[float, Field(strict=True, ge=0.001, le=10.0)]
Normalization = tuple[tuple[Mean, Mean, Mean], tuple[Std, Std, Std]]
EmbedDim = Annotated[int, Field(strict=True, ge=1, le=65_536)]
HeadTarget = Literal["person", "clothes"]
Neck = Literal["bnneck", "linear"]
NumOutputs = Literal[1, 6]
QualifiedName = Annotated[str, Field(pattern=QUALIFIED_NAME, max_length=200)]
ShortText = Annotated[str, Field(max_length=200)]
HeadIndex = Annotated[int, Field(strict=True, ge=0, lt=MAX_HEADS)]


class Provider(Record):
    """A registered item and the plugin distribution that supplied it."""

    qualified_name: QualifiedName
    plugin: ShortText
    distribution: ShortText
    version: ShortText

    @classmethod
    def of(cls, entry: Any) -> Provider:
        """The provider of a registry entry."""
        return cls(qualified_name=entry.qualified_name, plugin=entry.plugin, distribution=entry.distribution,
                   version=entry.version)


class ResolvedLossTerm(TypedDict):
    """One weighted loss of the recipe; a plain dict at run time."""

    __pydantic_config__ = {"extra": "forbid"}  # type: ignore[misc]

    loss: QualifiedName
    weight: Annotated[float, Field(strict=True, ge=0.0, le=1000.0)]
    args: dict[str, Any]
    heads: Literal["each"] | list[HeadIndex]


class ResolvedRecipe(Record):
    """Everything that rebuilds and retrains a method's model."""

    method: Provider
    backbone: Provider
    backbone_args: dict[str, Any]
    embed_dim: EmbedDim
    num_outputs: NumOutputs
    normalization: Normalization
    heads: tuple[HeadTarget, ...] = Field(min_length=1, max_length=MAX_HEADS)
    neck: Neck
    losses: tuple[ResolvedLossTerm, ...] = Field(min_length=1, max_length=64)
    train: TrainConfig
    overrides: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> ResolvedRecipe:
        if len(self.heads) != self.num_outputs:
            raise ValueError(f"heads has {len(self.heads)} item(s) but num_outputs is {self.num_outputs}; "
                             f"expected one head per backbone output")
        return self

    @property
    def input_size(self) -> tuple[int, int]:
        """The (height, width) the model is run at: the size it was trained at."""
        height, width = self.train.image_size
        return int(height), int(width)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_json(cls, data: Any, source: str = "recipe") -> ResolvedRecipe:
        """A recipe from its JSON form; a FormatError names `source` and every wrong field."""
        return validate_data(data, cls, source)


def drop_recorded_input_size(data: dict[str, Any]) -> dict[str, Any]:
    """Migration of a file whose recipe recorded `input_size` beside `train.image_size` (run config
    and package config version 1): the copy is dropped once it is checked to agree."""
    recipe = data.get("recipe")
    if not isinstance(recipe, dict) or "input_size" not in recipe:
        return data
    recipe = dict(recipe)
    recorded = recipe.pop("input_size")
    train = recipe.get("train")
    if isinstance(train, dict) and "image_size" not in train:
        recipe["train"] = {**train, "image_size": recorded}
    elif isinstance(train, dict) and recorded != train["image_size"]:
        raise ValueError(f"recipe.input_size = {recorded} differs from recipe.train.image_size = "
                         f"{train['image_size']}; expected the size the model was trained at")
    return {**data, "recipe": recipe}
