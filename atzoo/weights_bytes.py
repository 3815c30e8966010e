"""The same tensors always give the same weights bytes.

``safetensors`` writes its ``__metadata__`` map in hash order, which changes from one process to
the next, so two identical trainings could give files with different sha256. `sort_metadata`
rewrites the header in place with the metadata keys sorted; the tensors are not touched and the
header keeps its length, so the file stays a valid safetensors file.
"""

from __future__ import annotations

import json
import os
import struct

from atzoo.errors import AtzooError

METADATA_KEY = "__metadata__"


def canonical_header(header: bytes) -> bytes:
    """The JSON header with its metadata keys sorted, padded with spaces to the same length."""
    parsed = json.loads(header)
    metadata = parsed.get(METADATA_KEY)
    if not isinstance(metadata, dict):
        return header
    ordered = {METADATA_KEY: dict(sorted(metadata.items()))}
    ordered.update((key, value) for key, value in parsed.items() if key != METADATA_KEY)
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(text) > len(header):
        raise AtzooError("cannot sort the safetensors header: it would grow")
    return text + b" " * (len(header) - len(text))


def sort_metadata(path: str | os.PathLike) -> None:
    """Rewrite the safetensors file at ``path`` so that its header does not depend on hash order."""
    with open(path, "r+b") as handle:
        prefix = handle.read(8)
        if len(prefix) != 8:
            raise AtzooError(f"{path} is not a safetensors file (shorter than 8 bytes)")
        (length,) = struct.unpack("<Q", prefix)
        header = handle.read(length)
        if len(header) != length:
            raise AtzooError(f"{path} is not a safetensors file (its header is truncated)")
        handle.seek(8)
        handle.write(canonical_header(header))
