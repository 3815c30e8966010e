"""The metadata block of a model card (`README.md`'s YAML front matter), as the Hugging Face Hub
reads it: licence, library, tags and the model-index results (percentages, one per scenario).

YAML is read strictly too: a duplicate key, an alias (the "billion laughs" expansion) or a
non-finite number is refused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import ConfigDict, Field

from atzoo.errors import FormatError
from atzoo.formats.model import FormatModel, Record, validate_data
from atzoo.formats.packageconfig import DatasetRelease

MAX_CARD_BYTES = 1024 * 1024
Percent = Annotated[float, Field(strict=True, ge=0.0, le=100.0)]
Text = Annotated[str, Field(max_length=300)]


class CardMetric(Record):
    type: Literal["rank1", "rank5", "rank10", "rank20", "mAP", "mINP"]
    name: Text
    value: Percent


class CardTask(Record):
    type: Literal["image-feature-extraction"]
    name: Text


class CardDataset(Record):
    type: Literal["at-ustc"]
    name: Text
    split: Literal["DT-ST", "DT-LT", "NT-ST", "NT-LT", "AD-ST", "AD-LT", "Any-Time"]
    revision: DatasetRelease


class CardResult(Record):
    task: CardTask
    dataset: CardDataset
    metrics: list[CardMetric] = Field(max_length=6)


class ModelIndex(Record):
    name: Text
    results: list[CardResult] = Field(max_length=7)


class CardMetadata(FormatModel):
    """A model card's front matter. The Hub fixes its keys, so it carries no version key; the files
    of the first release are version 1."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, populate_by_name=True)

    FORMAT_NAME = "model card metadata"
    UNVERSIONED = 1

    license: str = Field(pattern=r"^[a-z0-9][a-z0-9.+-]{0,63}$", description="a Hub licence id, e.g. apache-2.0")
    library_name: Literal["atzoo"] = "atzoo"
    tags: list[Annotated[str, Field(max_length=100)]] = Field(max_length=50)
    model_index: list[ModelIndex] = Field(alias="model-index", min_length=1, max_length=1)


class _StrictLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses aliases and duplicate keys."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.YAMLError("aliases (*name) are not allowed in a model card")
        return super().compose_node(parent, index)


def _unique_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.YAMLError(f"the key {key!r} appears twice in the same mapping")
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def render_card_metadata(meta: CardMetadata) -> str:
    """The front matter block, fences included."""
    data = meta.model_dump(mode="json", by_alias=True)
    return "---\n" + yaml.safe_dump(data, sort_keys=False).rstrip() + "\n---\n"


def parse_card_metadata(text: str, source: str) -> CardMetadata:
    """The front matter of a model card's text, checked."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---" or "---" not in (line.strip() for line in lines[1:]):
        raise FormatError(f"{source} has no metadata block (a first line '---', YAML, then '---')", file=source)
    end = next(i for i, line in enumerate(lines[1:], 1) if line.strip() == "---")
    try:
        data = yaml.load("\n".join(lines[1:end]), Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except (yaml.YAMLError, TypeError, RecursionError) as error:
        raise FormatError(f"{source}: the metadata block is not valid YAML ({error})", file=source) from None
    return validate_data(data, CardMetadata, source)


def read_card_metadata(path: str | os.PathLike[str]) -> CardMetadata:
    path = Path(path)
    raw = path.read_bytes()[:MAX_CARD_BYTES + 1]
    if len(raw) > MAX_CARD_BYTES:
        raise FormatError(f"{path} is larger than {MAX_CARD_BYTES} bytes, too large for a model card", file=str(path))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"{path} is not UTF-8 text", file=str(path)) from None
    return parse_card_metadata(text, str(path))
