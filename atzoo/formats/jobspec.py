"""What a runner-service job runs, as stored (JSON text) in its queue row.

A train job: the method, the dataset root, the `--set` settings and, for a job that ends with a
leaderboard entry, the arguments of its `atzoo submit` step. A verify job: the entry file and the
dataset root. Rows written before the version field existed are version 1.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictBool

from atzoo.errors import FormatError
from atzoo.formats.jsonfile import dump_json, parse_json
from atzoo.formats.model import FormatModel, model_data, validate_data

MAX_SPEC_BYTES = 256 * 1024
Argument = Annotated[str, Field(max_length=4096)]
FolderPath = Annotated[str, Field(min_length=1, max_length=4096)]
JobKind = Literal["train", "verify"]
MethodName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]*(:[a-z0-9][a-z0-9_.-]*)?$", max_length=200,
                                  description="a registered method, plugin:name or its short name")]


class TrainJobSpec(FormatModel):
    FORMAT_NAME = "train job spec"
    UNVERSIONED = 1

    format_version: Literal[1] = 1
    method: MethodName
    data_root: FolderPath
    settings: list[Argument] = Field(default_factory=list, max_length=500)
    entry: StrictBool = False
    entry_args: list[Argument] = Field(default_factory=list, max_length=500)


class VerifyJobSpec(FormatModel):
    FORMAT_NAME = "verify job spec"
    UNVERSIONED = 1

    format_version: Literal[1] = 1
    entry: FolderPath
    data_root: FolderPath


JOB_SPECS: dict[str, type[TrainJobSpec] | type[VerifyJobSpec]] = {"train": TrainJobSpec, "verify": VerifyJobSpec}


def _model_of(kind: str, source: str) -> type[TrainJobSpec] | type[VerifyJobSpec]:
    if kind not in JOB_SPECS:
        raise FormatError(f"{source}: job kind {kind!r} is unknown; expected one of {', '.join(JOB_SPECS)}",
                          file=source)
    return JOB_SPECS[kind]


def check_job_spec(kind: str, spec: dict[str, object], source: str = "job spec") -> dict[str, object]:
    """`spec` validated for a job of `kind`, in the form the queue stores."""
    return model_data(validate_data(spec, _model_of(kind, source), source))


def job_spec_text(kind: str, spec: dict[str, object]) -> str:
    """The JSON text a queue row stores for `spec` (validated first)."""
    return dump_json(check_job_spec(kind, spec), "job spec").strip()


def parse_job_spec(kind: str, text: str | bytes, source: str) -> dict[str, object]:
    """A queue row's stored spec, parsed strictly and validated; errors start with `source`."""
    if len(text) > MAX_SPEC_BYTES:
        raise FormatError(f"{source} is larger than {MAX_SPEC_BYTES} bytes", file=source)
    return check_job_spec(kind, parse_json(text, source), source)
