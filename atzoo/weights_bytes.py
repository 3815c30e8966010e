"""The same tensors always give the same weights bytes.

``safetensors`` writes its ``__metadata__`` map in hash order, which changes from one process to
the next, so two identical trainings could give files with different sha256. `sort_metadata`
rewrites the header in place with the metadata keys sorted; the tensors are not touched and the
header keeps its length, so the file stays a valid safetensors file.
"""

from __future__ import annotations

import json
import os
from typing import Any

from atzoo.errors import AtzooError
from atzoo.formats.weights_header import read_weights_header

METADATA_KEY = "__metadata__"


def canonical_header(header: dict[str, Any], length: int) -> bytes:
    """The JSON header with its metadata keys sorted and first, padded with spaces to `length`
    bytes (the length of the header it replaces)."""
    ordered = {METADATA_KEY: dict(sorted(header[METADATA_KEY].items()))}
    ordered.update((key, value) for key, value in header.items() if key != METADATA_KEY)
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(text) > length:
        raise AtzooError("cannot sort the safetensors header: it would grow")
    return text + b" " * (length - len(text))


def sort_metadata(path: str | os.PathLike) -> None:
    """Rewrite the safetensors file at ``path`` so that its header does not depend on hash order."""
    header, data_start = read_weights_header(path)
    if not isinstance(header.get(METADATA_KEY), dict):
        return
    text = canonical_header(header, data_start - 8)
    with open(path, "r+b") as handle:
        handle.seek(8)
        handle.write(text)
