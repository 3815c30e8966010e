"""Moderation: flag (with a reason), unflag, withdraw, supersede. Entries are never deleted, so a
result once shown stays traceable; the app hides flagged and withdrawn rows by default and marks
superseded ones."""

from __future__ import annotations

import os
from pathlib import Path

from atzoo.errors import LeaderboardError
from atzoo.formats.entry import Entry
from atzoo.leaderboard.store import load_snapshot, read_entry, registered_entry_path, supersede_chain, update_entry


def _registered(root: str | os.PathLike, entry_id: str) -> tuple[Path, Entry]:
    path = registered_entry_path(root, entry_id)
    if not path.is_file():
        raise LeaderboardError(f"no entry {entry_id!r} in the registry {root} (expected {path})")
    return path, read_entry(path)


def flag(root: str | os.PathLike, entry_id: str, reason: str) -> Entry:
    """Mark an entry as disputed; the reason is shown beside it."""
    if not reason.strip():
        raise LeaderboardError(f"flagging {entry_id} needs a reason (what is wrong, and where it was reported)")
    path, entry = _registered(root, entry_id)
    return update_entry(path, moderation={**entry.moderation.model_dump(), "flagged": True,
                                           "flag_reason": reason.strip()})


def unflag(root: str | os.PathLike, entry_id: str) -> Entry:
    path, entry = _registered(root, entry_id)
    return update_entry(path, moderation={**entry.moderation.model_dump(), "flagged": False, "flag_reason": ""})


def withdraw(root: str | os.PathLike, entry_id: str) -> Entry:
    """The submitter (or a maintainer) retracts the entry; it stays on disk, hidden by default."""
    path, entry = _registered(root, entry_id)
    return update_entry(path, moderation={**entry.moderation.model_dump(), "withdrawn": True})


def supersede(root: str | os.PathLike, entry_id: str, by: str) -> Entry:
    """Point an entry at its replacement, which must exist in the same registry and must not lead
    back to the entry (a supersede cycle would hide every entry in it)."""
    if by == entry_id:
        raise LeaderboardError(f"entry {entry_id} cannot supersede itself")
    path, current = _registered(root, entry_id)
    registered_entry_path(root, by)
    snapshot = load_snapshot(root)
    successor = snapshot.get(by)
    chain = supersede_chain(entry_id, by, snapshot)
    if chain[-1] == entry_id:
        raise LeaderboardError(f"{entry_id} cannot be superseded by {by}: that would make a cycle "
                               f"({' -> '.join(chain)})")
    if successor.dataset.release != current.dataset.release:
        raise LeaderboardError(f"{by} is on release {successor.dataset.release}, {entry_id} on "
                               f"{current.dataset.release}; an entry is superseded only within one release")
    return update_entry(path, moderation={**current.moderation.model_dump(), "superseded_by": by})
