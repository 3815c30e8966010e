"""``leaderboard/verifiers.json``: the verifiers whose signatures the registry trusts.

```
{"format": "atzoo-verifiers-1",
 "verifiers": [{"name": "ustc-runner", "public_key": "<base64 of 32 raw Ed25519 bytes>", "added": "2026-12-02"}]}
```
A name or a key listed twice is an error: a signature must point at exactly one key.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import os
import re
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from atzoo.errors import LeaderboardError

VERIFIERS = "verifiers.json"
VERIFIERS_FORMAT = "atzoo-verifiers-1"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


def public_key_text(key: Ed25519PublicKey) -> str:
    """The 32 raw bytes of an Ed25519 public key, base64."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


class VerifierKey(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN, description="The verifier, as written in a verified block.")
    public_key: str = Field(description="base64 of the 32 raw bytes of an Ed25519 public key")
    added: dt.date

    @staticmethod
    def check_name(name: str) -> str:
        if not re.fullmatch(NAME_PATTERN, name):
            raise LeaderboardError(f"verifier name {name!r}: expected 1-64 letters, digits, '.', '_' or '-', "
                                   f"starting with a letter or digit")
        return name

    @field_validator("public_key")
    @classmethod
    def _ed25519_key(cls, value: str) -> str:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("not base64 text") from None
        if len(raw) != 32:
            raise ValueError(f"an Ed25519 public key has 32 bytes, this one {len(raw)}")
        return value

    def key(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(self.public_key))


class VerifiersFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["atzoo-verifiers-1"] = "atzoo-verifiers-1"
    verifiers: list[VerifierKey] = Field(default_factory=list)

    @model_validator(mode="after")
    def _each_once(self) -> VerifiersFile:
        for field in ("name", "public_key"):
            seen: set[str] = set()
            for item in self.verifiers:
                value = getattr(item, field)
                if value in seen:
                    raise ValueError(f"{field} {value!r} is listed twice; each verifier and each key once")
                seen.add(value)
        return self

    def by_name(self) -> dict[str, VerifierKey]:
        return {item.name: item for item in self.verifiers}


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ValueError(f"duplicate key(s) {', '.join(map(repr, repeated))}")
    return dict(pairs)


def parse_verifiers(text: str, source: str) -> VerifiersFile:
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except ValueError as error:
        raise LeaderboardError(f"{source} is not valid JSON ({error})") from None
    try:
        return VerifiersFile.model_validate(data)
    except ValidationError as error:
        problems = [f"{'.'.join(str(p) for p in item['loc']) or '(file)'}: "
                    f"{item['msg'].removeprefix('Value error, ')}" for item in error.errors()]
        raise LeaderboardError(f"{source} is not a valid verifiers file:\n  " + "\n  ".join(problems)) from None


def read_verifiers_file(path: str | os.PathLike) -> VerifiersFile:
    """The listing at `path`; a missing file lists nobody (then no verified block is trusted)."""
    path = Path(path)
    if not path.exists():
        return VerifiersFile()
    return parse_verifiers(path.read_text(encoding="utf-8"), str(path))


def write_verifiers_file(path: str | os.PathLike, listing: VerifiersFile) -> None:
    from atzoo.io import write_json_atomic

    write_json_atomic(path, listing.model_dump(mode="json"))
