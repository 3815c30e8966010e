"""File helpers kept for existing callers; they delegate to `atzoo.formats`, the one home of
atomic writes and strict JSON (duplicate keys, non-finite numbers, depth and size refused)."""

from __future__ import annotations

import hashlib
import os
from typing import Any

from atzoo.errors import FormatError
from atzoo.formats.atomic import atomic_path, permissions_from_umask, write_text_atomic
from atzoo.formats.jsonfile import read_json, write_json

__all__ = ["atomic_path", "permissions_from_umask", "read_json", "read_json_checked", "write_json_atomic",
           "write_text_atomic"]


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    write_json(path, data)


def read_json_checked(path: str | os.PathLike[str], error: type[Exception]) -> Any:
    """`read_json`, with every format problem (not JSON, duplicate key, too deep...) raised as
    `error`, naming the file."""
    try:
        return read_json(path)
    except FormatError as problem:
        raise error(str(problem)) from None


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
