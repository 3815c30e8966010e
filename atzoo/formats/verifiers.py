"""``leaderboard/verifiers.json``: the verifiers whose signatures the registry trusts.

```
{"format_version": 1,
 "verifiers": [{"name": "ustc-runner", "public_key": "<base64 of 32 raw Ed25519 bytes>", "added": "2026-12-02"}]}
```
A name or a key listed twice is an error: a signature must point at exactly one key.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import os
import re
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import Field, field_validator, model_validator

from atzoo.errors import LeaderboardError
from atzoo.formats.model import FormatModel, read_model, write_model

VERIFIERS = "verifiers.json"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


def public_key_text(key: Ed25519PublicKey) -> str:
    """The 32 raw bytes of an Ed25519 public key, base64."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


class VerifierKey(FormatModel):
    FORMAT_NAME = "verifier key"

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
            raise ValueError("not base64 text; expected the base64 of a 32-byte Ed25519 public key") from None
        if len(raw) != 32:
            raise ValueError(f"an Ed25519 public key has 32 bytes, this one {len(raw)}")
        return value

    def key(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(self.public_key))


class VerifiersFile(FormatModel):
    FORMAT_NAME = "verifiers file"

    format_version: Literal[1] = 1
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


def read_verifiers_file(path: str | os.PathLike) -> VerifiersFile:
    """The listing at `path`; a missing file lists nobody (then no verified block is trusted)."""
    path = Path(path)
    if not path.exists():
        return VerifiersFile()
    return read_model(path, VerifiersFile)


def write_verifiers_file(path: str | os.PathLike, listing: VerifiersFile) -> None:
    write_model(path, listing)
