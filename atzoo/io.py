"""Atomic file writes: a reader never sees a half-written file, a crash never leaves one."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any
from collections.abc import Iterator


def permissions_from_umask(executable: bool = False) -> int:
    """The mode a plain `open()` (or `mkdir()` when `executable`) would give under the current umask;
    `tempfile` creates owner-only files and folders, which atomic writes must not leak."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if executable else 0o666) & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, permissions_from_umask())
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_json_checked(path: str | os.PathLike, error: type[Exception]) -> Any:
    """`read_json`, with a file that is not JSON (or nested past Python's recursion limit) reported
    as `error`, naming the file."""
    try:
        return read_json(path)
    except ValueError as problem:
        raise error(f"{path} is not valid JSON ({problem})") from None
    except RecursionError:
        raise error(f"{path} is nested too deeply to be read as JSON") from None
