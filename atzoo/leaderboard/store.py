"""The entry registry on disk: ``LEADERBOARD_DIR/entries/ID.json``, read into cached snapshots.

A snapshot is rebuilt only when an entry file is added, removed or changed (its name, size or
modification time) or the registry's ``verifiers.json`` changes, so the app answers requests from
memory. A file that fails validation, or whose verified block is not signed by a listed verifier,
does not hide the others: it is listed in ``Snapshot.problems`` and left out of ``entries``.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atzoo.errors import FormatError, LeaderboardError
from atzoo.io import read_json, write_json_atomic
from atzoo.formats.entry import ID_PATTERN, Entry, entry_problems, parse_entry
from atzoo.formats.verifiers import VERIFIERS, VerifiersFile, read_verifiers_file
from atzoo.leaderboard.signing import signature_problem

ENTRIES = "entries"
SCHEMA_DIR = "schema"
ENV_DIR = "ATZOO_LEADERBOARD_DIR"


def default_leaderboard_dir() -> Path:
    """``$ATZOO_LEADERBOARD_DIR``, else ``./leaderboard`` (the registry folder of a clone)."""
    return Path(os.environ.get(ENV_DIR) or "leaderboard")


def entries_dir(root: str | os.PathLike) -> Path:
    return Path(root) / ENTRIES


def entry_path(root: str | os.PathLike, entry_id: str) -> Path:
    return entries_dir(root) / f"{entry_id}.json"


def registered_entry_path(root: str | os.PathLike, entry_id: str) -> Path:
    """The file of entry `entry_id` in the registry at `root`. An id given by a user is checked
    against the id pattern and must resolve inside the entries folder, so that no path (``../x``,
    a link out of the folder) makes a command read or rewrite a file elsewhere."""
    if not re.fullmatch(ID_PATTERN, entry_id):
        raise LeaderboardError(f"{entry_id!r} is not an entry id: expected 2-80 lowercase letters, digits, '.', "
                               f"'_' or '-', starting with a letter or digit")
    path = entry_path(root, entry_id)
    if path.resolve().parent != entries_dir(root).resolve():
        raise LeaderboardError(f"entry {entry_id!r}: {path} resolves outside the registry's entries folder")
    return path


@dataclass(frozen=True)
class Snapshot:
    """Every valid entry of a registry at one moment, plus the files that failed validation."""

    root: Path
    entries: tuple[Entry, ...]
    problems: dict[str, list[str]] = field(default_factory=dict)
    verifiers: VerifiersFile = field(default_factory=VerifiersFile)

    def get(self, entry_id: str) -> Entry:
        for entry in self.entries:
            if entry.id == entry_id:
                return entry
        raise LeaderboardError(f"no entry {entry_id!r} in the registry")

    @property
    def ids(self) -> list[str]:
        return [entry.id for entry in self.entries]


def read_entry(path: str | os.PathLike) -> Entry:
    """One entry file, checked; errors name the file and list every problem."""
    path = Path(path)
    if not path.is_file():
        raise LeaderboardError(f"{path}: no such entry file")
    try:
        data = read_json(path)
    except FormatError as error:
        raise LeaderboardError(str(error)) from None
    entry = parse_entry(data, str(path))
    if path.suffix == ".json" and path.stem != entry.id:
        raise LeaderboardError(f"{path}: the file name must be the entry id ({entry.id}.json)")
    return entry


def read_registry(root: str | os.PathLike) -> Snapshot:
    """Every entry file read, validated and its signature checked now (no cache): what
    :func:`load_snapshot` avoids repeating. A malformed ``verifiers.json`` is an error."""
    root = Path(root)
    verifiers = read_verifiers_file(root / VERIFIERS)
    entries: list[Entry] = []
    problems: dict[str, list[str]] = {}
    for path in sorted(entries_dir(root).glob("*.json")):
        try:
            entry = read_entry(path)
        except LeaderboardError as error:
            problems[path.name] = str(error).splitlines()[1:] or [str(error)]
            continue
        refused = signature_problem(entry, verifiers)
        if refused:
            problems[path.name] = [refused]
        else:
            entries.append(entry)
    return Snapshot(root, tuple(entries), problems, verifiers)


def _fingerprint(root: Path) -> tuple:
    folder = entries_dir(root)
    if not folder.is_dir():
        raise LeaderboardError(f"{root} is not a leaderboard registry: {folder} does not exist")
    stats = ((e.name, e.stat()) for e in os.scandir(folder) if e.name.endswith(".json"))
    listing = root / VERIFIERS
    verifiers = (listing.stat().st_size, listing.stat().st_mtime_ns) if listing.exists() else None
    return (verifiers, tuple(sorted((name, stat.st_size, stat.st_mtime_ns) for name, stat in stats)))


_cache: dict[Path, tuple[tuple, Snapshot]] = {}
_lock = threading.Lock()


def load_snapshot(root: str | os.PathLike | None = None) -> Snapshot:
    """The registry's entries, re-read only when a file changed since the last call."""
    root = Path(root or default_leaderboard_dir()).resolve()
    key = _fingerprint(root)
    with _lock:
        cached = _cache.get(root)
        if cached is not None and cached[0] == key:
            return cached[1]
        snapshot = read_registry(root)
        _cache[root] = (key, snapshot)
        return snapshot


def duplicate_problems(entry: Entry, snapshot: Snapshot, *, replacing: bool = False) -> list[str]:
    """An id already taken, or the same weights file evaluated under the same protocol and release."""
    problems = []
    for other in snapshot.entries:
        if other.id == entry.id:
            if not replacing:
                problems.append(f"id: {entry.id!r} is already taken by an entry of the registry")
            continue
        weights, other_weights = entry.weights, other.weights
        same_weights = weights is not None and other_weights is not None and weights.sha256 == other_weights.sha256
        if (weights is not None and same_weights and entry.dataset.release == other.dataset.release
                and entry.dataset.protocol_version == other.dataset.protocol_version):
            problems.append(f"weights: the same weights file (sha256 {weights.sha256[:12]}...) is already "
                            f"entered for release {entry.dataset.release} as {other.id!r}")
    return problems


def supersede_chain(entry_id: str, successor: str, snapshot: Snapshot) -> list[str]:
    """The ids from `entry_id` along ``superseded_by`` links, starting with `successor`, up to the
    first id that is not in the registry, has no successor, or repeats (a cycle: then it is last)."""
    by_id = {entry.id: entry for entry in snapshot.entries}
    chain = [entry_id]
    current: str | None = successor
    while current is not None:
        chain.append(current)
        if current in chain[:-1] or current not in by_id:
            break
        current = by_id[current].moderation.superseded_by
    return chain


def link_problems(entry: Entry, snapshot: Snapshot) -> list[str]:
    """A ``superseded_by`` that names no entry of the registry, or that leads back to a cycle."""
    successor = entry.moderation.superseded_by
    if successor is None:
        return []
    known = set(snapshot.ids) | {entry.id}
    if successor not in known:
        return [f"moderation.superseded_by: {successor!r} names no entry of the registry"]
    chain = supersede_chain(entry.id, successor, snapshot)
    if chain[-1] in chain[:-1]:
        return [f"moderation.superseded_by: the entries supersede each other in a cycle ({' -> '.join(chain)})"]
    return []


def registry_problems(entry: Entry, snapshot: Snapshot, *, replacing: bool = False) -> list[str]:
    """Duplicates (:func:`duplicate_problems`) and broken supersede links (:func:`link_problems`)."""
    return duplicate_problems(entry, snapshot, replacing=replacing) + link_problems(entry, snapshot)


SUBMISSION_VERIFIED = ("verified: a submission may not carry a verified block; the shared runner writes it "
                       "(signed) after re-evaluating the weights - remove the block")


def check_entry_data(data: Any, snapshot: Snapshot | None = None, *, submission: bool = False) -> list[str]:
    """Every problem of an entry that can be seen without its weights or the dataset: the schema,
    a verified block (refused in a `submission`; else its signature checked against the snapshot's
    verifiers), then (given a snapshot) duplicates and broken supersede links. Used by the app's
    Submit tab and ``atzoo leaderboard check``."""
    problems = entry_problems(data)
    if submission and isinstance(data, dict) and data.get("verified") is not None:
        problems.insert(0, SUBMISSION_VERIFIED)
    if problems:
        return problems
    entry = Entry.model_validate(data)
    refused = signature_problem(entry, snapshot.verifiers if snapshot is not None else VerifiersFile())
    if refused:
        problems.append(refused)
    if snapshot is None:
        return problems
    return problems + registry_problems(entry, snapshot)


def write_entry(root: str | os.PathLike, entry: Entry, *, overwrite: bool = False) -> Path:
    """Write ``entries/ID.json`` atomically; refuses to replace an entry unless ``overwrite``."""
    path = entry_path(root, entry.id)
    if path.exists() and not overwrite:
        raise LeaderboardError(f"{path} already exists; choose another id")
    write_json_atomic(path, entry.to_json())
    return path


def update_entry(path: str | os.PathLike, **changes: Any) -> Entry:
    """Replace top-level fields of an entry file (e.g. ``verified=...``), re-validated, atomically."""
    path = Path(path)
    entry = read_entry(path)
    data = entry.to_json()
    for key, value in changes.items():
        data[key] = value.model_dump(mode="json", by_alias=True) if hasattr(value, "model_dump") else value
    updated = parse_entry(data, str(path))
    write_json_atomic(path, updated.to_json())
    return updated
