"""Helpers for tests that need verified blocks: a verifier listed in a registry, and entry data signed by it."""

from __future__ import annotations

from pathlib import Path

from atzoo.formats.entry import Entry, Verified
from atzoo.leaderboard.signing import Signer, keygen, load_signer, sign_verified


def listed_signer(registry: Path, key_dir: Path, name: str = "test-runner") -> Signer:
    """A new verifier `name` listed in `registry`'s verifiers.json, its private key in `key_dir`."""
    path, _ = keygen(registry, name, key_dir / f"{name}.pem")
    return load_signer(name, path)


def signed(data: dict, signer: Signer) -> dict:
    """Entry `data` with its verified block signed by `signer` (as `atzoo leaderboard verify` writes it)."""
    entry = Entry.model_validate(data)
    block = sign_verified(entry, Verified.model_validate(data["verified"]), signer)
    return {**data, "verified": block.model_dump(mode="json", by_alias=True)}
