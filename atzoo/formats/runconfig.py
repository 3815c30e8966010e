"""A run folder's `config.json`: the resolved recipe, the data root, the label counts, provenance.

Written once by `atzoo train`; read by `--resume`, `evaluate`, `export` and the app's demo.
"""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import Field, model_validator

from atzoo.formats.model import FormatModel, read_model, write_model
from atzoo.formats.recipe import ResolvedRecipe, drop_recorded_input_size

SHA256 = r"^[0-9a-f]{64}$"
PROTOCOL_VERSION_PATTERN = r"^[0-9]{1,3}\.[0-9]{1,3}$"
MAX_PERSONS = 100_000
MAX_CLOTHES = 1_000_000

PersonCount = Annotated[int, Field(strict=True, ge=1, le=MAX_PERSONS,
                                   description="training identities (AT-USTC: 135)")]
ClothesCount = Annotated[int, Field(strict=True, ge=1, le=MAX_CLOTHES,
                                    description="training clothes identities (person, clothing) pairs")]
ProtocolVersion = Annotated[str, Field(pattern=PROTOCOL_VERSION_PATTERN)]


class RunConfig(FormatModel):
    """What `atzoo train` resolved before its first step."""

    FORMAT_NAME = "run config"
    FORMAT_VERSION = 2
    VERSION_KEY = "format"
    VERSION_PREFIX = "atzoo-run-"

    MIGRATIONS = {1: drop_recorded_input_size}

    format: Literal["atzoo-run-2"] = "atzoo-run-2"
    protocol_version: ProtocolVersion
    recipe: ResolvedRecipe
    data_root: str = Field(min_length=1, max_length=4096)
    dataset_fingerprint: str = Field(pattern=SHA256)
    num_persons: PersonCount
    num_clothes: ClothesCount

    @model_validator(mode="after")
    def _clothes_cover_persons(self) -> RunConfig:
        if self.num_clothes < self.num_persons:
            raise ValueError(f"num_clothes ({self.num_clothes}) is below num_persons ({self.num_persons}); every "
                             f"person wears at least one outfit")
        return self


def read_run_config(path: str | os.PathLike[str]) -> RunConfig:
    return read_model(path, RunConfig, max_bytes=1024 * 1024)


def write_run_config(path: str | os.PathLike[str], config: RunConfig) -> None:
    write_model(path, config)
