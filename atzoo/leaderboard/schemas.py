"""The JSON Schemas of the files a registry and a results pipeline exchange, generated from their
models and committed in ``leaderboard/schema/`` for tools outside Python (a test keeps them current)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from atzoo.formats.entry import SCHEMA_FILE, entry_json_schema
from atzoo.formats.verifiers import VerifiersFile


def model_json_schema(model: type[BaseModel], file_name: str, title: str) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://atzoo.dev/schema/{file_name}"
    schema["title"] = title
    return schema


def registry_schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema, for every committed schema file."""
    return {
        SCHEMA_FILE: entry_json_schema(),
        "verifiers-v1.schema.json": model_json_schema(VerifiersFile, "verifiers-v1.schema.json",
                                                      "atzoo leaderboard verifiers, format atzoo-verifiers-1"),
    }
