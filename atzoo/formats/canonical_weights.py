"""Reproducible safetensors bytes: the same tensors and metadata always give the same file.

The safetensors writer stores the ``__metadata__`` map in hash-map order, which changes from one
process to the next, so the same model saved twice could get two sha256. A leaderboard entry pins
its weights by sha256, so atzoo rewrites the header with its keys sorted (same length, same tensor
offsets: only the order of the metadata's keys changes).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

from atzoo.errors import FormatError
from atzoo.formats.atomic import atomic_path

HEADER_ALIGNMENT = 8


def canonical_header(header: dict[str, Any], length: int) -> bytes:
    """The header JSON with ``__metadata__`` first and its keys sorted, tensors in their order,
    padded with spaces to `length` bytes (the writer's own length, a multiple of 8)."""
    ordered: dict[str, Any] = {}
    if "__metadata__" in header:
        ordered["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    ordered.update((key, value) for key, value in header.items() if key != "__metadata__")
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()
    if len(text) > length:
        raise FormatError(f"the canonical safetensors header ({len(text)} bytes) does not fit the written one "
                          f"({length} bytes)")
    return text + b" " * (length - len(text))


def canonicalize(path: str | os.PathLike) -> None:
    """Rewrite the header of the safetensors file at `path` in canonical order, in place."""
    with open(path, "r+b") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
        handle.seek(8)
        handle.write(canonical_header(header, length))


def save_model_reproducibly(model: Any, path: str | os.PathLike, metadata: dict[str, str]) -> None:
    """`safetensors.torch.save_model` with canonical bytes, written atomically."""
    from safetensors.torch import save_model

    with atomic_path(Path(path)) as tmp:
        save_model(model, str(tmp), metadata=metadata)
        canonicalize(tmp)
