"""Weights on the Hugging Face Hub: push through the upload guard (`atzoo.uploadguard`), pull with a
pinned revision and a checked sha256, offline from the local cache when ``HF_HUB_OFFLINE=1``; and
`load`, a model from a package folder or a Hub id.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from atzoo.io import sha256_file
from atzoo.errors import ChecksumError, HubError, PackageError
from atzoo.package import (CARD, CONFIG, PICKLE_SUFFIXES, RESULTS, WEIGHTS, build_package_model, check_weights_readable,
                           package_tensors, read_package, refuse_pickle)
from atzoo.uploadguard import ALLOWED_FILES, Offender, guard, scan_folder

if TYPE_CHECKING:
    import torch

    from atzoo.registry import Registry

__all__ = ["ALLOWED_FILES", "Offender", "PullResult", "UploadPlan", "guard", "load", "parse_repo_ref", "plan_upload",
           "pull", "push", "registered_weights", "scan_folder", "sha256_file"]

REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


@dataclass(frozen=True)
class UploadPlan:
    """What a push sends: the allow-listed files with their sizes, and the weights' sha256."""

    repo_id: str
    revision: str | None
    folder: Path
    files: tuple[tuple[str, int], ...]
    weights_sha256: str
    commit: str | None = None
    """The commit the push created (None for a dry run): what a leaderboard entry pins."""

    def describe(self) -> str:
        lines = [f"repo {self.repo_id} @ {self.revision or 'main'}, from {self.folder}:"]
        lines += [f"  {name}  {size} bytes" for name, size in self.files]
        lines.append(f"  sha256({WEIGHTS}) = {self.weights_sha256}")
        if self.commit:
            lines.append(f"  commit {self.commit}: pin it as {self.repo_id}@{self.commit}")
        return "\n".join(lines)


@dataclass(frozen=True)
class PullResult:
    path: Path
    repo_id: str
    revision: str
    sha256: str
    verified_against: str = ""
    files: tuple[str, ...] = field(default_factory=tuple)


# ---------------------------------------------------------------------------------------------
# repo ids


def parse_repo_ref(ref: str, revision: str | None = None) -> tuple[str, str | None]:
    """``ORG/NAME[@REVISION]`` -> (repo id, revision); an explicit `revision` must agree."""
    repo_id, sep, ref_revision = str(ref).partition("@")
    if sep and not ref_revision:
        raise HubError(f"repo reference {ref!r} has an empty revision after '@'")
    if not REPO_ID.fullmatch(repo_id) or "--" in repo_id or ".." in repo_id or repo_id.endswith((".", "-")):
        raise HubError(f"{repo_id!r} is not a Hub repo id: expected ORG/NAME (letters, digits, '-', '_', '.'), "
                       f"optionally @REVISION")
    if sep and revision and revision != ref_revision:
        raise HubError(f"{ref!r} pins revision {ref_revision!r} but --revision says {revision!r}")
    return repo_id, (ref_revision or revision or None)


# ---------------------------------------------------------------------------------------------
# push


def plan_upload(folder: str | os.PathLike, repo_id: str, revision: str | None = None) -> UploadPlan:
    """Check the repo id, run the guard and read the package; raise before anything is sent."""
    repo_id, revision = parse_repo_ref(repo_id, revision)
    folder = Path(folder)
    guard(folder, model_tensors=package_tensors)
    read_package(folder)
    check_weights_readable(folder / WEIGHTS)
    files = tuple((name, (folder / name).stat().st_size) for name in ALLOWED_FILES if (folder / name).is_file())
    return UploadPlan(repo_id, revision, folder, files, sha256_file(folder / WEIGHTS))


def push(folder: str | os.PathLike, repo_id: str, *, revision: str | None = None, dry_run: bool = False,
         private: bool | None = None, token: str | None = None, api: Any = None) -> UploadPlan:
    """Upload a package's allow-listed files in one commit (nothing when `dry_run`)."""
    plan = plan_upload(folder, repo_id, revision)
    if dry_run:
        return plan
    from huggingface_hub import CommitOperationAdd, HfApi

    api = api or HfApi(token=token)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(plan.folder / name))
                  for name, _ in plan.files]
    try:
        api.create_repo(plan.repo_id, private=private, exist_ok=True)
        if plan.revision and plan.revision != "main":
            api.create_branch(plan.repo_id, branch=plan.revision, exist_ok=True)
        commit = api.create_commit(plan.repo_id, operations, commit_message="Upload atzoo model package",
                                   revision=plan.revision)
    except Exception as error:  # the hub library raises many kinds; all mean the push failed
        raise HubError(f"pushing {plan.folder} to {plan.repo_id} failed: {error}") from None
    return dataclasses.replace(plan, commit=getattr(commit, "oid", None))


# ---------------------------------------------------------------------------------------------
# pull


def registered_weights(repo_id: str, registry: Registry | None = None) -> list[Any]:
    """PretrainedWeights entries the zoo registered for `repo_id`."""
    from atzoo.registry import load_registry

    registry = registry or load_registry()
    return [entry.item for entry in registry.entries("weights") if entry.item.repo_id == repo_id]


@overload
def _download(repo_id: str, filename: str, revision: str, cache_dir: str | None, required: Literal[True]) -> Path: ...


@overload
def _download(repo_id: str, filename: str, revision: str, cache_dir: str | None, required: bool) -> Path | None: ...


def _download(repo_id: str, filename: str, revision: str, cache_dir: str | None, required: bool) -> Path | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir))
    except LocalEntryNotFoundError:
        if not required:
            return None
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        hint = ("HF_HUB_OFFLINE is set, so only the local cache is read; pull it once online"
                if offline else "the hub cannot be reached and the file is not in the local cache")
        raise HubError(f"{filename} of {repo_id}@{revision} is not available: {hint}") from None
    except EntryNotFoundError:  # on the hub, the file is absent from the repo
        if required:
            raise HubError(f"{repo_id}@{revision} has no {filename}; it is not an atzoo model package") from None
        return None
    except Exception as error:  # repository/revision not found, HTTP errors, ...
        raise HubError(f"downloading {filename} from {repo_id}@{revision} failed: {error}") from None


def pull(ref: str, *, revision: str | None = None, sha256: str | None = None, filename: str = WEIGHTS,
         cache_dir: str | os.PathLike | None = None, registry: Registry | None = None,
         sha256_source: str = "--sha256") -> PullResult:
    """Download a package (weights, config, card, results) at a pinned revision into the Hub cache
    and check the weights' sha256 against `sha256` or the zoo's registered entry for the repo.

    The revision defaults to the registered entry's, else ``main``. A mismatch raises `HubError`.
    `sha256_source` says where `sha256` came from, for the messages (default: the ``--sha256`` option).
    """
    repo_id, revision = parse_repo_ref(ref, revision)
    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise HubError(f"{sha256_source} {sha256!r} is not a sha256 (64 hex digits)")
    expected, source = (sha256.lower(), sha256_source) if sha256 else (None, "")
    for entry in registered_weights(repo_id, registry):
        if revision in (None, entry.revision) and entry.filename == filename:
            revision = revision or entry.revision
            if expected is None:
                expected, source = entry.sha256, f"the zoo entry {entry.method}.{entry.tag}"
            break
    revision = revision or "main"
    cache = str(cache_dir) if cache_dir is not None else None
    subfolder = Path(filename).parent.as_posix()
    prefix = "" if subfolder == "." else subfolder + "/"
    weights = _download(repo_id, filename, revision, cache, required=True)
    actual = sha256_file(weights)
    if expected is not None and actual != expected:
        raise ChecksumError(f"sha256 mismatch for {filename} of {repo_id}@{revision}: expected {expected} "
                       f"(from {source}), got {actual}; the file was not loaded")
    fetched = [filename]
    for name in (CONFIG, RESULTS, CARD):
        if _download(repo_id, prefix + name, revision, cache, required=(name == CONFIG)) is not None:
            fetched.append(prefix + name)
    return PullResult(weights.parent, repo_id, revision, actual, source, tuple(fetched))


# ---------------------------------------------------------------------------------------------
# load


def load(path_or_id: str | os.PathLike, *, revision: str | None = None, sha256: str | None = None,
         registry: Registry | None = None, device: str = "cpu") -> torch.nn.Module:
    """A model from a local package folder or a Hub repo id (``ORG/NAME[@REVISION]``), in eval mode.

    A Hub id is downloaded with its revision pinned (or read from the local cache offline) and its
    weights checked against ``sha256`` or the zoo's registered checksum.
    """
    local = Path(path_or_id)
    if local.exists():
        package = read_package(local)
    elif local.suffix.lower() in PICKLE_SUFFIXES:
        refuse_pickle(local)
    elif local.is_absolute() or str(path_or_id).startswith((".", "~")) or len(local.parts) > 2:
        raise PackageError(f"{path_or_id}: no such model package folder (and it is not a Hub id ORG/NAME)")
    else:
        package = read_package(pull(str(path_or_id), revision=revision, sha256=sha256, registry=registry).path)
    return build_package_model(package, registry).to(device)
