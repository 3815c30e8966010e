"""Signed verification: a verified block counts only when a listed verifier's Ed25519 key signed it.

A verifier's private key lives outside the repository (``~/.config/atzoo/keys/NAME.pem`` by default,
file mode 0600); its public key is listed in the registry's ``verifiers.json`` with the verifier's name
and the date it was added. ``atzoo leaderboard verify`` signs the canonical JSON of everything a
verified number depends on: the entry id, the weights' repo, commit, file name and sha256, the dataset
release and protocol, the reported metrics and the whole verified block (less its signature). Editing
or removing any of these, copying the block to another entry, or signing with a key that is not
listed under the block's verifier breaks the signature; an unsigned block is never accepted.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from atzoo.errors import LeaderboardError
from atzoo.formats.verifiers import (VERIFIERS, VerifierKey, VerifiersFile, public_key_text, read_verifiers_file,
                                     write_verifiers_file)
from atzoo.formats.entry import Entry, Verified

KEY_DIR_ENV = "ATZOO_KEY_DIR"
SIGNATURE_PURPOSE = "atzoo-verification-1"


def default_key_dir() -> Path:
    """``$ATZOO_KEY_DIR``, else ``~/.config/atzoo/keys``: outside any repository."""
    return Path(os.environ.get(KEY_DIR_ENV) or Path.home() / ".config" / "atzoo" / "keys")


def default_key_path(name: str) -> Path:
    return default_key_dir() / f"{name}.pem"


def verifiers_path(registry_dir: str | os.PathLike) -> Path:
    return Path(registry_dir) / VERIFIERS


# ---------------------------------------------------------------------------------------------
# keys


@dataclass(frozen=True)
class Signer:
    """A verifier's name and private key, as used by ``atzoo leaderboard verify``."""

    name: str
    key: Ed25519PrivateKey

    @property
    def public_key(self) -> str:
        return public_key_text(self.key.public_key())


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def keygen(registry_dir: str | os.PathLike, name: str, key_path: str | os.PathLike | None = None,
           today: dt.date | None = None) -> tuple[Path, VerifierKey]:
    """Create an Ed25519 key pair for verifier `name`: the private key written to `key_path` (mode
    0600, never replacing a file, never inside the registry), the public key added to the registry's
    ``verifiers.json``. Everything is checked before anything is written."""
    registry_dir = Path(registry_dir)
    target = Path(key_path) if key_path is not None else default_key_path(name)
    listing_path = verifiers_path(registry_dir)
    listing = read_verifiers_file(listing_path)
    VerifierKey.check_name(name)
    if any(item.name == name for item in listing.verifiers):
        raise LeaderboardError(f"{listing_path}: verifier {name!r} is already listed; choose another name, or "
                               f"remove the old key from the file first to replace it")
    if target.exists():
        raise LeaderboardError(f"{target} already exists; a private key is never overwritten (pass --key PATH)")
    if registry_dir.exists() and _inside(target, registry_dir):
        raise LeaderboardError(f"{target} is inside the registry {registry_dir}: a private key must never be "
                               f"committed; keep it outside the repository (default {default_key_path(name)})")
    private = Ed25519PrivateKey.generate()
    item = VerifierKey(name=name, public_key=public_key_text(private.public_key()), added=today or dt.date.today())
    _write_private_key(target, private)
    write_verifiers_file(listing_path, VerifiersFile(verifiers=[*listing.verifiers, item]))
    return target, item


def _write_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(descriptor, pem)
    finally:
        os.close(descriptor)
    os.chmod(path, 0o600)


def private_key_warning(path: str | os.PathLike) -> str | None:
    """A warning when the private key file can be read by the group or by others."""
    mode = Path(path).stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return (f"{path} can be read by other users (mode {stat.S_IMODE(mode):04o}); "
                f"restrict it with `chmod 600 {path}`")
    return None


def load_signer(name: str, key_path: str | os.PathLike | None = None) -> Signer:
    """Verifier `name`'s private key from `key_path` (default :func:`default_key_path`)."""
    path = Path(key_path) if key_path is not None else default_key_path(name)
    if not name.strip():
        raise LeaderboardError("no verifier named: pass --verifier NAME (or set ATZOO_VERIFIER); a verified block "
                               "is signed with that verifier's key")
    if not path.is_file():
        raise LeaderboardError(f"{path}: no such private key file; create one with `atzoo leaderboard keygen "
                               f"--name {name}` or pass --key PATH")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as error:
        raise LeaderboardError(f"{path} is not an unencrypted PEM private key ({error})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise LeaderboardError(f"{path} holds a {type(key).__name__}, not an Ed25519 private key")
    return Signer(name.strip(), key)


def check_signer(registry_dir: str | os.PathLike, signer: Signer) -> None:
    """The signer must be listed in the registry's ``verifiers.json`` with this very public key."""
    path = verifiers_path(registry_dir)
    listed = read_verifiers_file(path).by_name()
    if signer.name not in listed:
        raise LeaderboardError(f"verifier {signer.name!r} is not listed in {path}; a maintainer adds it with "
                               f"`atzoo leaderboard keygen --name {signer.name}`")
    if listed[signer.name].public_key != signer.public_key:
        raise LeaderboardError(f"the private key given for verifier {signer.name!r} does not match the public "
                               f"key listed for it in {path}")


# ---------------------------------------------------------------------------------------------
# signatures


def canonical_json(data: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8, no NaN: the same content always gives the same bytes."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def signed_content(entry: Entry, verified: Verified) -> dict[str, Any]:
    """Everything a verified number depends on, as signed."""
    data = entry.to_json()
    weights = data["weights"] or {}
    cross_fields = {"cross_dataset", "cross_unavailable"}
    cross_measured = verified.cross_dataset is not None or bool(verified.cross_unavailable)
    content = {
        "purpose": SIGNATURE_PURPOSE,
        "entry_id": entry.id,
        "weights": {key: weights.get(key) for key in ("repo", "revision", "filename", "sha256")},
        "dataset": data["dataset"],
        "reported": data["reported"],
        "verified": verified.model_dump(mode="json", by_alias=True,
                                        exclude={"signature"} | (set() if cross_measured else cross_fields)),
    }
    if data.get("cross_dataset") is not None:
        content["reported_cross_dataset"] = data["cross_dataset"]
    return content


def sign_verified(entry: Entry, verified: Verified, signer: Signer) -> Verified:
    """`verified` with ``verifier`` set to the signer's name and its signature over the entry."""
    unsigned = verified.model_copy(update={"verifier": signer.name, "signature": ""})
    signature = signer.key.sign(canonical_json(signed_content(entry, unsigned)))
    return unsigned.model_copy(update={"signature": base64.b64encode(signature).decode("ascii")})


def signature_problem(entry: Entry, listing: VerifiersFile) -> str | None:
    """Why `entry`'s verified block must not be trusted, or None when it has none or it is sound."""
    verified = entry.verified
    if verified is None:
        return None
    where = f"entry {entry.id}: verified.signature"
    if not verified.signature:
        return (f"{where}: the verified block is not signed; only `atzoo leaderboard verify` with a listed "
                f"verifier's key writes a verified block")
    listed = listing.by_name()
    if verified.verifier not in listed:
        return (f"{where}: verifier {verified.verifier!r} is not listed in {VERIFIERS} "
                f"(listed: {', '.join(sorted(listed)) or 'none'})")
    try:
        raw = base64.b64decode(verified.signature, validate=True)
    except (binascii.Error, ValueError):
        return f"{where}: not base64 text"
    if len(raw) != 64:
        return f"{where}: an Ed25519 signature has 64 bytes, this one {len(raw)} (truncated or padded)"
    public: Ed25519PublicKey = listed[verified.verifier].key()
    try:
        public.verify(raw, canonical_json(signed_content(entry, verified)))
    except InvalidSignature:
        return (f"{where}: does not verify against {verified.verifier!r}'s listed key: the entry's weights, "
                f"dataset, reported numbers or verified block changed after signing, or the block was signed "
                f"for another entry or with another key")
    return None


def trusted_entry_problems(entry: Entry, listing: VerifiersFile) -> list[str]:
    problem = signature_problem(entry, listing)
    return [problem] if problem else []
