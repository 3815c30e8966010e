"""JSON Schemas of the file formats users see, generated from the models (never written by hand).

The committed copies live in `schemas/` at the repository root; a test checks they are current.
Regenerate them with ``python -m atzoo.formats.schemas --write`` after changing a format.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from atzoo.formats.card import CardMetadata
from atzoo.formats.jobspec import TrainJobSpec, VerifyJobSpec
from atzoo.formats.model import FormatModel
from atzoo.formats.packageconfig import PackageConfig
from atzoo.formats.runconfig import RunConfig

PUBLISHED: dict[str, type[FormatModel]] = {
    "run-config": RunConfig,
    "package-config": PackageConfig,
    "model-card-metadata": CardMetadata,
    "train-job-spec": TrainJobSpec,
    "verify-job-spec": VerifyJobSpec,
}
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


def schema_of(name: str, model: type[FormatModel]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    schema.pop("title", None)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://atzoo.dev/schema/{file_name(name, model)}",
            "title": f"atzoo {model.FORMAT_NAME}, format version {model.FORMAT_VERSION}", **schema}


def file_name(name: str, model: type[FormatModel]) -> str:
    return f"{name}-v{model.FORMAT_VERSION}.schema.json"


def schema_texts() -> dict[str, str]:
    """File name -> the text of each published schema, as committed."""
    return {file_name(name, model): json.dumps(schema_of(name, model), indent=2) + "\n"
            for name, model in PUBLISHED.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write", action="store_true", help=f"write the schemas into {SCHEMA_DIR}")
    parser.add_argument("--dir", type=Path, default=SCHEMA_DIR, help="folder to write into")
    args = parser.parse_args(argv)
    if not args.write:
        print("\n".join(schema_texts()))
        return 0
    from atzoo.formats.atomic import write_text_atomic

    for name, text in schema_texts().items():
        write_text_atomic(args.dir / name, text)
        print(args.dir / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
