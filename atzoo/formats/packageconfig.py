"""A model package's `config.json`: what rebuilds the model through the registry, checked before
any tensor is made (an `input_size` of 100000x100000 is refused here, by name)."""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from atzoo.formats.model import FormatModel, Record, read_model, write_model
from atzoo.formats.recipe import (EmbedDim, HeadTarget, InputSize, Neck, Normalization, NumOutputs, QualifiedName,
                                  ResolvedRecipe, ShortText, drop_recorded_input_size)
from atzoo.formats.runconfig import ClothesCount, PersonCount, ProtocolVersion

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
RESULTS = "results.json"
CARD = "README.md"
PACKAGE_FILES = (WEIGHTS, CONFIG, RESULTS, CARD)
"""The files of a model package folder, and nothing else."""

MAX_CONFIG_BYTES = 1024 * 1024

DatasetRelease = Literal["403k", "135k", "synthetic", "custom"]
Fingerprint = Annotated[str, Field(pattern=r"^([0-9a-f]{64})?$", description="sha256, or empty when unknown")]


class PluginRequirement(Record):
    """The plugin that provides an item, and the pip requirement that installs it."""

    name: ShortText
    distribution: ShortText
    version: ShortText
    requires: ShortText


class PackageConfig(FormatModel):
    """Everything but the weights that a package's model needs."""

    FORMAT_NAME = "model package config"
    FORMAT_VERSION = 2
    VERSION_KEY = "format"
    VERSION_PREFIX = "atzoo-model-"

    MIGRATIONS = {1: drop_recorded_input_size}

    format: Literal["atzoo-model-2"] = "atzoo-model-2"
    method: QualifiedName
    backbone: QualifiedName
    plugin: PluginRequirement
    backbone_plugin: PluginRequirement
    backbone_args: dict[str, Any]
    input_size: InputSize
    normalization: Normalization
    num_heads: NumOutputs
    heads: tuple[HeadTarget, ...] = Field(min_length=1, max_length=6)
    neck: Neck
    embed_dim: EmbedDim
    num_persons: PersonCount
    num_clothes: ClothesCount
    protocol_version: ProtocolVersion
    dataset_release: DatasetRelease
    dataset_fingerprint: Fingerprint = ""
    recipe: ResolvedRecipe

    @model_validator(mode="after")
    def _agrees_with_its_recipe(self) -> PackageConfig:
        recipe = self.recipe
        pairs = (("method", self.method, recipe.method.qualified_name),
                 ("backbone", self.backbone, recipe.backbone.qualified_name),
                 ("input_size", list(self.input_size), list(recipe.input_size)),
                 ("num_heads", self.num_heads, recipe.num_outputs), ("heads", list(self.heads), list(recipe.heads)),
                 ("neck", self.neck, recipe.neck), ("embed_dim", self.embed_dim, recipe.embed_dim))
        for name, value, expected in pairs:
            if value != expected:
                raise ValueError(f"{name} is {value!r} but the recipe says {expected!r}; expected the same value")
        return self


def read_package_config(path: str | os.PathLike[str]) -> PackageConfig:
    return read_model(path, PackageConfig, max_bytes=MAX_CONFIG_BYTES)


def write_package_config(path: str | os.PathLike[str], config: PackageConfig) -> None:
    write_model(path, config)
