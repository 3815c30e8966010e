"""One rule for every folder or file a command writes.

A command writes into a new or empty folder, or replaces (``--overwrite``) only a folder that holds
exactly what that command makes. It never writes where it would destroy or mix with what the user
owns: an output that is, contains or lies inside one of the command's inputs, an output that is a
dataset root, a run folder, a runner directory or a repository, or that lies inside a dataset root
or a run folder, is refused before anything is read or written, naming the folder and what was
found there. Replacing is done by the commands themselves: staged beside and renamed, so an
interrupted overwrite leaves the old output in place.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from atzoo.errors import AtzooError

PERSON_FOLDER = re.compile(r"^p\d+-d\d+-c\d+$")
SYNTHETIC_MANIFEST = "synthetic.json"
RUN_FILES = ("checkpoint.safetensors", "train_log.jsonl", "metrics.json", "environment.json", "dataset.json")
RUNNER_MARKER = "atzoo-runner.json"
REPOSITORY_MARKERS = (".git", ".hg", ".svn")


class OutputError(AtzooError):
    """An output path that a command must not write to, or must not replace."""


@dataclass(frozen=True)
class OutputKind:
    """What a command makes: its name for messages, and a test that an existing folder holds only that."""

    name: str
    holds_only_own: Callable[[Path], bool]


def _entries(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return [entry.name for entry in entries]


def is_dataset_root(folder: Path) -> bool:
    """A synthetic dataset (its manifest) or a folder with at least one AT-USTC person folder at its top;
    the scan stops at the first person folder, so a full dataset is not listed."""
    if (folder / SYNTHETIC_MANIFEST).is_file():
        return True
    try:
        with os.scandir(folder) as entries:
            return any(PERSON_FOLDER.match(entry.name) and entry.is_dir(follow_symlinks=False) for entry in entries)
    except OSError:
        return False


def is_run_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any((folder / name).is_file() for name in RUN_FILES)


def is_runner_dir(folder: Path) -> bool:
    return (folder / RUNNER_MARKER).is_file()


def is_repository(folder: Path) -> bool:
    return any((folder / marker).exists() for marker in REPOSITORY_MARKERS)


def what_is(folder: Path) -> str | None:
    """What the user owns at `folder` that no command may replace or write inside of; None when nothing."""
    if not folder.is_dir():
        return None
    if is_repository(folder):
        return "a repository"
    if is_runner_dir(folder):
        return "a runner directory"
    if is_run_folder(folder):
        return "a run folder"
    if is_dataset_root(folder):
        return "a dataset root"
    return None


def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_not_an_input(out: Path, inputs: Iterable[str | os.PathLike]) -> None:
    """Refuse an output that is, contains or lies inside one of `inputs`."""
    target = _resolved(out)
    for item in inputs:
        source = _resolved(Path(item))
        if target == source:
            raise OutputError(f"the output {out} is the input {item}; choose another output path")
        if _inside(source, target):
            raise OutputError(f"the output {out} contains the input {item}; choose another output path")
        if _inside(target, source) and source.is_dir():
            raise OutputError(f"the output {out} lies inside the input {item}; choose a path outside it")


def check_not_inside_owned(out: Path) -> None:
    """Refuse an output inside a dataset root or a run folder (outputs inside a repository are fine:
    that is where `runs/` and `packages/` usually live)."""
    for folder in _resolved(out).parents:
        found = what_is(folder)
        if found in ("a dataset root", "a run folder"):
            raise OutputError(f"the output {out} lies inside {folder}, which is {found}; "
                              f"choose a path outside it")


def nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def check_writable_location(out: Path) -> None:
    """The output's nearest existing folder must be a folder this process may write to; checked before
    any work starts. A read-only or forbidden location raises the `OSError` the write would have raised,
    which the command line's error boundary reports with the path."""
    anchor = nearest_existing(out if not out.exists() else out)
    if anchor != Path(os.path.abspath(out)) and not anchor.is_dir():
        raise OutputError(f"the output {out} lies under {anchor}, which is a file, not a folder")
    folder = anchor if anchor.is_dir() else anchor.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
        code = errno.EROFS if read_only else errno.EACCES
        raise OSError(code, os.strerror(code), str(folder))


_OUTPUTS_OF_THIS_PROCESS: list[Path] = []


def outputs_checked() -> tuple[Path, ...]:
    """The outputs this process checked (most recent last): what an error without a file name (a
    `write()` on a full disk) was writing, for the command line's message."""
    return tuple(_OUTPUTS_OF_THIS_PROCESS)


def check_placement(out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Where an output may go at all: not an input nor inside one, not inside a dataset root or a run,
    and somewhere writable."""
    _OUTPUTS_OF_THIS_PROCESS.append(Path(out))
    check_not_an_input(Path(out), inputs)
    check_not_inside_owned(Path(out))
    check_writable_location(Path(out))


def check_fresh_folder(out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (), *, hint: str = "") -> Path:
    """An output that must be a new or empty folder (a run: it is continued, never replaced)."""
    out = Path(out)
    check_placement(out, inputs)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise OutputError(f"the output {out} exists and is not a folder; choose a new or empty folder")
    if out.exists() and _entries(out):
        found = what_is(out)
        raise OutputError(f"the output {out} already exists and is not empty"
                          + (f" (it is {found})" if found else "") + (f"; {hint}" if hint else ""))
    return out


def check_output_folder(out: str | os.PathLike, kind: OutputKind, *, inputs: Iterable[str | os.PathLike] = (),
                        overwrite: bool = False) -> Path:
    """Apply the rule to a folder output of `kind`; returns the path. Raises `OutputError` when refused."""
    out = Path(out)
    check_placement(out, inputs)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise OutputError(f"the output {out} exists and is not a folder; choose a new or empty folder")
    if not out.exists() or not _entries(out):
        return out
    found = what_is(out)
    if found is not None and not kind.holds_only_own(out):
        raise OutputError(f"the output {out} is {found}; {kind.name} never writes into or replaces it "
                          f"(not even with --overwrite): choose a new or empty folder")
    if not overwrite:
        raise OutputError(f"the output {out} already exists and is not empty; pass --overwrite to replace "
                          f"{kind.name} there, or choose a new or empty folder")
    if not kind.holds_only_own(out):
        listed = ", ".join(sorted(_entries(out))[:5])
        raise OutputError(f"the output {out} holds files that are not {kind.name} ({listed}); --overwrite "
                          f"replaces only a folder holding exactly {kind.name}: choose a new or empty folder")
    return out


def check_output_file(out: str | os.PathLike, what: str, *, inputs: Iterable[str | os.PathLike] = (),
                      overwrite: bool = False, is_own: Callable[[Path], bool] = lambda path: True) -> Path:
    """Apply the rule to a single-file output (e.g. a features file): never a folder, never an input,
    an existing file only with `overwrite` and only when `is_own` says it is what the command makes."""
    out = Path(out)
    check_placement(out, inputs)
    if out.is_dir():
        raise OutputError(f"the output {out} is a folder; give the path of {what} to write")
    if out.exists() or out.is_symlink():
        if out.is_symlink() or not out.is_file():
            raise OutputError(f"the output {out} exists and is not a regular file; choose another path")
        if not overwrite:
            raise OutputError(f"the output {out} already exists; pass --overwrite to replace it")
        if not is_own(out):
            raise OutputError(f"the output {out} is not {what}; --overwrite replaces only {what}")
    return out


def replace_folder(staged: Path, out: Path) -> None:
    """Move the finished folder `staged` to `out`. An old `out` is moved aside first and deleted only
    once the new one is in place; if putting the new one in place fails, the old one is put back."""
    if out.is_dir() and not out.is_symlink() and not _entries(out):
        out.rmdir()
    if not os.path.lexists(out):
        os.rename(staged, out)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.replace(out, aside / out.name)
    try:
        os.rename(staged, out)
    except BaseException:
        os.replace(aside / out.name, out)
        shutil.rmtree(aside, ignore_errors=True)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def package_folder_only(folder: Path) -> bool:
    from atzoo.formats.packageconfig import PACKAGE_FILES

    names = _entries(folder)
    return bool(names) and set(names) <= set(PACKAGE_FILES)


def synthetic_dataset_only(folder: Path) -> bool:
    """A folder the synthetic generator wrote: its manifest, and person folders only."""
    if not (folder / SYNTHETIC_MANIFEST).is_file():
        return False
    return all(name == SYNTHETIC_MANIFEST or PERSON_FOLDER.match(name) for name in _entries(folder))


PACKAGE = OutputKind("a model package", package_folder_only)
SYNTHETIC_DATASET = OutputKind("a synthetic dataset", synthetic_dataset_only)
RUNNER_DIR = OutputKind("a runner directory", lambda folder: False)
