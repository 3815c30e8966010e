"""Strict JSON: the one JSON reader and writer of atzoo.

Python's `json` module accepts what JSON forbids or what silently changes meaning: a key written
twice (the last one wins, while another reader may keep the first), `NaN` and `Infinity`, a number
too large for a float (read as infinity), any nesting depth, and any file size. Here each of those is
a :class:`~atzoo.errors.FormatError` naming the file, and so is text that is not UTF-8.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from atzoo.errors import FormatError
from atzoo.formats.atomic import write_text_atomic

MAX_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 64


class _Refused(ValueError):
    """Raised from inside the decoder's hooks; turned into a FormatError by `parse_json`."""


def _refuse_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number (non-finite numbers are refused)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {text} is too large to be represented (it would be read as infinity)")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Refused(f"the key {key!r} appears twice in the same object")
        result[key] = value
    return result


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_refuse_constant,
                            parse_float=_finite_float)


def nesting_depth(value: Any) -> int:
    """How many arrays/objects deep `value` goes (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_json(text: str | bytes, source: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON text strictly; `source` (a file name, "entry", "job 12's spec") starts every error."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as error:
            raise FormatError(f"{source} is not UTF-8 text (byte {error.start} is {text[error.start:error.start + 1]!r}); "
                              f"JSON files are UTF-8", file=source) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        data, end = _DECODER.raw_decode(text, _skip_space(text, 0))
    except _Refused as problem:
        raise FormatError(f"{source} is not valid JSON: {problem}", file=source) from None
    except json.JSONDecodeError as error:
        raise FormatError(f"{source} is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}",
                          file=source) from None
    except (ValueError, RecursionError) as error:
        raise FormatError(f"{source} is not valid JSON ({error})" if isinstance(error, ValueError)
                          else f"{source} is nested too deeply to be read as JSON (more than {max_depth} levels)", file=source) from None
    if _skip_space(text, end) != len(text):
        raise FormatError(f"{source} is not valid JSON: extra data after the value at character {end}", file=source)
    if nesting_depth(data) > max_depth:
        raise FormatError(f"{source} is nested too deeply to be read as JSON (more than {max_depth} levels)", file=source)
    return data


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t\n\r":
        index += 1
    return index


def read_json(path: str | os.PathLike[str], *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """Read a JSON file strictly; a file larger than `max_bytes` is refused before it is read whole."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise FormatError(f"{path} does not exist", file=str(path)) from None
    except IsADirectoryError:
        raise FormatError(f"{path} is a folder, not a JSON file", file=str(path)) from None
    if len(raw) > max_bytes:
        raise FormatError(f"{path} is larger than {max_bytes} bytes, too large for this kind of file", file=str(path))
    return parse_json(raw, str(path), max_depth=max_depth)


def _non_finite_field(value: Any, location: str = "") -> str | None:
    """The dotted path of the first non-finite float inside `value`, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return location or "(the value itself)"
    items: Any = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list | tuple) else ()
    for key, child in items:
        found = _non_finite_field(child, f"{location}.{key}" if location else str(key))
        if found:
            return found
    return None


def dump_json(data: Any, source: str = "JSON data") -> str:
    """`data` as indented JSON text; a non-finite number is a FormatError naming its field."""
    field = _non_finite_field(data)
    if field is not None:
        raise FormatError(f"{source}: {field} is not a finite number; JSON files written by atzoo hold finite numbers "
                          f"only", file=source)
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


def dump_json_line(data: Any, source: str = "JSON data") -> str:
    """`data` as one compact line of JSON (for `.jsonl` logs); non-finite numbers refused."""
    dump_json(data, source)
    return json.dumps(data, allow_nan=False, separators=(",", ":")) + "\n"


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write `data` as JSON atomically (a temporary file beside, then a rename)."""
    write_text_atomic(path, dump_json(data, str(path)))
