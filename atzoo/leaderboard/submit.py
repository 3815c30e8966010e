"""Submission: a run or an exported model package turned into a checked leaderboard entry.

Everything that can be checked without the dataset is checked here, before an entry file exists:
the aggregate results (six scenarios, metrics in [0, 1], CMC never decreasing, Any-Time the mean
of the six), the weights file (its safetensors header, its sha256, the same bytes as the pinned
Hub revision when that revision is reachable), the method (registered, the rebuilt model loads the
weights with a strict key match) and duplicates in the registry. The dataset itself is needed only
by :mod:`atzoo.leaderboard.verify`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Iterator, Sequence

from atzoo.errors import AtzooError, ChecksumError, FormatError, HubError, LeaderboardError
from atzoo.formats.weights_header import read_weights_header
from atzoo.io import read_json_checked
from atzoo.formats.entry import (METRICS, RANKED_RELEASES, TASK_FAMILIES, Entry, entry_problems,
                                 metrics_from_fractions, slugify)
from atzoo.leaderboard.store import Snapshot, duplicate_problems, load_snapshot, write_entry
from atzoo.package import (CONFIG, FORMAT, PACKAGE_KIND, RESULTS, RUN_FORMAT, RUN_KIND, WEIGHTS, ModelPackage, config_kind,
                           read_package)
from atzoo.protocol import ANY_TIME, EVALUATOR_VERSION, SCENARIO_NAMES

if TYPE_CHECKING:
    from atzoo.registry import Registry

ANY_TIME_TOLERANCE = 1e-6
COMMIT = re.compile(r"[0-9a-f]{40}")
SHA256 = re.compile(r"[0-9a-fA-F]{64}")
CMC = ("rank1", "rank5", "rank10", "rank20")
FIND_COMMIT_HINT = ("`atzoo push` prints the commit it created; otherwise list the repo's commits with "
                    "`huggingface_hub.HfApi().list_repo_commits(REPO)` and pass ORG/NAME@<40-hex commit id>")


@dataclass(frozen=True)
class Submission:
    """A checked entry, plus notes for the submitter (e.g. the Hub could not be reached)."""

    entry: Entry
    notes: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------
# results


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _scenario_problems(name: str, values: Any, source: str) -> list[str]:
    if not isinstance(values, dict):
        return [f"{source}: {name} must be an object of metrics, got {type(values).__name__}"]
    problems = []
    for metric in METRICS:
        value = values.get(metric)
        if value is None:
            problems.append(f"{source}: {name} lacks {metric}")
        elif not _is_number(value) or not 0.0 <= value <= 1.0:
            problems.append(f"{source}: {name} {metric} = {value!r} is not a fraction in [0, 1]")
    ranks = [(metric, float(values[metric])) for metric in CMC if _is_number(values.get(metric))]
    for (low_name, low), (high_name, high) in zip(ranks, ranks[1:]):
        if high < low:
            problems.append(f"{source}: {name} {high_name} ({high}) is below {low_name} ({low}); "
                            f"a CMC curve never decreases")
    return problems


def _any_time_problems(results: dict[str, Any], source: str) -> list[str]:
    """Any-Time is derived, so a value that is not the mean of the six means the file was edited."""
    any_time = results.get(ANY_TIME)
    if any_time is None:
        return []
    if not isinstance(any_time, dict):
        return [f"{source}: {ANY_TIME} must be an object of metrics"]
    problems = []
    for metric in METRICS:
        values = [results[name].get(metric) for name in SCENARIO_NAMES]
        if metric not in any_time or not all(_is_number(v) for v in values):
            continue
        mean = sum(values) / len(values)
        claimed = any_time[metric]
        if not _is_number(claimed) or abs(claimed - mean) > ANY_TIME_TOLERANCE:
            problems.append(f"{source}: {ANY_TIME} {metric} = {claimed!r} is not the mean of the six scenarios "
                            f"({mean:.6f}); the results look tampered with")
    return problems


def results_problems(results: Any, source: str = RESULTS) -> list[str]:
    """Every problem of a package's aggregate results (fractions), one line each."""
    if not isinstance(results, dict):
        return [f"{source}: expected a JSON object of scenarios, got {type(results).__name__}"]
    problems = []
    for name in SCENARIO_NAMES:
        if name not in results:
            problems.append(f"{source}: scenario {name} is missing; all six are required")
        else:
            problems += _scenario_problems(name, results[name], source)
    if not problems:
        problems += _any_time_problems(results, source)
    return problems


def read_results(package: ModelPackage) -> dict[str, Any]:
    path = package.path / RESULTS
    if not path.is_file():
        raise LeaderboardError(f"{path}: no such file; a package's results.json holds its six-scenario metrics")
    return read_json_checked(path, LeaderboardError)


# ---------------------------------------------------------------------------------------------
# the weights file


def read_safetensors_header(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON header of a safetensors file, checked against the file's size (the tensors' data
    offsets included) so that a truncated or edited file is refused."""
    try:
        header, data_start = read_weights_header(path)
    except FormatError as error:
        raise LeaderboardError(str(error)) from None
    _check_tensors(Path(path), header, os.path.getsize(path) - data_start)
    return header


def _check_tensors(path: Path, header: dict[str, Any], data_bytes: int) -> None:
    for name, info in header.items():
        if name == "__metadata__":
            continue
        shape = info.get("shape") if isinstance(info, dict) else None
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        valid = (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)
                 and isinstance(offsets, list) and len(offsets) == 2
                 and all(isinstance(o, int) for o in offsets) and 0 <= offsets[0] <= offsets[1] <= data_bytes)
        if not valid:
            raise LeaderboardError(f"{path}: damaged safetensors header (tensor {name!r} has a bad shape or "
                                   f"data offsets outside the file's {data_bytes} data bytes)")


def count_parameters(header: dict[str, Any]) -> int:
    """The number of values stored in the file: the sum over tensors of the product of the shape."""
    return sum(math.prod(info["shape"]) for name, info in header.items() if name != "__metadata__")


def parse_weights_ref(ref: str) -> tuple[str, str]:
    """``ORG/NAME@COMMIT`` -> (repo, commit); a missing revision or a branch name is refused."""
    from atzoo.hub import parse_repo_ref

    try:
        repo, revision = parse_repo_ref(ref)
    except HubError as error:
        raise LeaderboardError(f"--weights-repo: {error}") from None
    if revision is None:
        raise LeaderboardError(f"--weights-repo {ref!r} names no revision: pin the exact commit as "
                               f"ORG/NAME@COMMIT. {FIND_COMMIT_HINT}")
    if not COMMIT.fullmatch(revision):
        raise LeaderboardError(f"--weights-repo {ref!r}: revision {revision!r} is not a 40-hex commit id; a "
                               f"branch or tag can move, so entries pin a commit. {FIND_COMMIT_HINT}")
    return repo, revision


def _hub_problems(repo: str, revision: str, local_sha: str, weights: str) -> tuple[list[str], list[str]]:
    """(problems, notes): the Hub file at the pinned commit must be the local file, when reachable."""
    from atzoo.hub import pull

    try:
        pulled = pull(repo, revision=revision)
    except ChecksumError as error:
        return [f"weights: the hash does not match the weights: {error}"], []
    except HubError as error:
        return [], [f"the weights at {repo}@{revision} could not be fetched to compare ({error}); "
                    f"verification will fetch them and check sha256 {local_sha}"]
    if pulled.sha256 != local_sha:
        return [f"weights: the hash does not match the weights: {repo}@{revision} has sha256 {pulled.sha256}, "
                f"the local {weights} has {local_sha}"], []
    return [], [f"the weights at {repo}@{revision} are the local file (sha256 {local_sha})"]


# ---------------------------------------------------------------------------------------------
# the source folder


def _source_config(source: Path) -> Any:
    config = source / CONFIG
    if source.exists() and not source.is_dir():
        raise LeaderboardError(f"{source} is a file; expected a run directory or an exported package folder")
    if not source.is_dir():
        raise LeaderboardError(f"{source}: no such folder (expected a run directory or an exported package)")
    if not config.is_file():
        raise LeaderboardError(f"{source} has no {CONFIG}: it is neither a run directory (`atzoo train`) nor "
                               f"a model package (`atzoo export`)")
    return read_json_checked(config, LeaderboardError)


@contextlib.contextmanager
def open_source(source_dir: str | os.PathLike, dataset_release: str | None = None) -> Iterator[ModelPackage]:
    """The package of `source_dir`: itself when it is a package, else the run exported to a
    temporary package (removed on exit), exactly as `atzoo export` would write it."""
    from atzoo.package import export_run

    source = Path(source_dir)
    config = _source_config(source)
    kind = config_kind(config)
    if kind == PACKAGE_KIND:
        yield read_package(source)
        return
    if kind != RUN_KIND:
        found = config.get("format") if isinstance(config, dict) else None
        raise LeaderboardError(f"{source / CONFIG} has format {found!r}; expected {FORMAT!r} (a package) or "
                               f"{RUN_FORMAT!r} (a run directory)")
    with tempfile.TemporaryDirectory(prefix="atzoo-submit-") as tmp:
        yield read_package(export_run(source, Path(tmp) / "package", dataset_release=dataset_release))


# ---------------------------------------------------------------------------------------------
# the entry


def default_entry_id(method_name: str, sha256: str) -> str:
    """``slug(method)-SHA8``: readable, and distinct for distinct weights."""
    return f"{slugify(method_name)[:60].strip('-') or 'entry'}-{sha256[:8]}"


def _release_problems(config: dict[str, Any], dataset_release: str | None, source: Path) -> list[str]:
    release = config.get("dataset_release")
    if dataset_release is not None and release != dataset_release:
        return [f"{source / CONFIG}: the package was made for dataset release {release!r}, "
                f"not {dataset_release!r}"]
    if release not in RANKED_RELEASES:
        return [f"{source / CONFIG}: dataset release {release!r} is not one the board ranks "
                f"({', '.join(RANKED_RELEASES)}): results on a custom collection can be packaged and shared, "
                f"but not submitted, since nobody else can verify them on the same data"]
    return []


def provenance_problems(package: ModelPackage, weights_sha: str) -> list[str]:
    """The results must say they were measured on these very weights, on the package's data."""
    from atzoo.formats.metrics import read_results as read_results_file

    path = package.path / RESULTS
    try:
        provenance = read_results_file(path).provenance
    except FormatError as error:
        return [f"{error} (export the run again with `atzoo export`: results carry their provenance)"]
    problems = []
    if provenance.weights_sha256 != weights_sha:
        problems.append(f"{path}: provenance.weights_sha256 is {provenance.weights_sha256[:12]}..., but the "
                        f"package's weights have {weights_sha[:12]}...: these results are not of these weights")
    if provenance.dataset.fingerprint != package.config.get("dataset_fingerprint"):
        problems.append(f"{path}: provenance.dataset.fingerprint differs from {CONFIG}'s dataset_fingerprint")
    return problems


def _model_problems(package: ModelPackage, registry: Registry | None) -> list[str]:
    from atzoo.package import build_package_model
    from atzoo.registry import load_registry

    registry = registry or load_registry()
    method = package.config["method"]
    try:
        registry.get("methods", method)
    except AtzooError as error:
        requires = (package.config.get("plugin") or {}).get("requires") or "the plugin that provides it"
        return [f"method: {method!r} is not registered ({error}); install {requires}"]
    try:
        build_package_model(package, registry)
    except AtzooError as error:
        return [f"weights: {error}"]
    return []


def _entry_data(package: ModelPackage, results: dict[str, Any], *, repo: str, revision: str, sha256: str,
                num_params: int, entry_id: str | None, name: str | None, task_family: str, paper: str | None,
                code: str | None, submitter: str, pretraining: str, extra_training_data: Sequence[str],
                re_ranking: bool, tta: Sequence[str], query_expansion: bool, notes: str) -> dict[str, Any]:
    config = package.config
    plugin = config.get("plugin") or {}
    method_name = name or config["method"].rpartition(":")[2]
    return {
        "schema_version": 1,
        "id": entry_id or default_entry_id(method_name, sha256),
        "origin": "submission",
        "method": {"name": method_name, "registered_name": config["method"],
                   "plugin_distribution": plugin.get("distribution") or None,
                   "plugin_version": plugin.get("version") or None, "task_family": task_family},
        "links": {"paper": paper, "code": code},
        "submitter": submitter,
        "date": dt.date.today().isoformat(),
        "weights": {"repo": repo, "revision": revision, "filename": WEIGHTS, "sha256": sha256,
                    "num_params": num_params},
        "model": {"backbone": config.get("backbone", ""), "pretraining": pretraining,
                  "extra_training_data": list(extra_training_data), "input_size": list(config["input_size"])},
        "disclosures": {"re_ranking": re_ranking, "test_time_augmentation": list(tta),
                        "query_expansion": query_expansion, "notes": notes},
        "dataset": {"release": config.get("dataset_release"),
                    "protocol_version": str(config.get("protocol_version", "")),
                    "evaluator_version": EVALUATOR_VERSION,
                    "fingerprint": config.get("dataset_fingerprint") or None},
        "reported": metrics_from_fractions(results),
    }


def _weights_shown(source_dir: str | os.PathLike, package: ModelPackage) -> str:
    """The weights file as the user knows it: a run's own file, not the temporary package's copy."""
    from atzoo.runner.rundir import MODEL

    source = Path(source_dir)
    return str(package.weights if package.path == source else source / MODEL)


UNPUSHED = "0" * 40
"""The revision a `--push` submission carries until its push has created the real commit."""


def weights_source_problem(weights_ref: str | None, push_to: str | None) -> str | None:
    """Exactly one of a pinned ``ORG/NAME@COMMIT`` or a repo to push the weights to is needed."""
    if (weights_ref is None) == (push_to is None):
        return ("give exactly one of --weights-repo ORG/NAME@COMMIT (weights already on the Hub) or "
                "--push ORG/NAME (upload them now and pin the commit that creates)")
    return None


def _push_weights(package: ModelPackage, push_to: str) -> str:
    """Upload the checked package (guarded, like `atzoo push`) and return the commit it created."""
    from atzoo.hub import parse_repo_ref, push

    repo, branch = parse_repo_ref(push_to)
    plan = push(package.path, repo, revision=branch)
    if not plan.commit or not COMMIT.fullmatch(plan.commit):
        raise LeaderboardError(f"the push to {repo} returned no commit id ({plan.commit!r}); pin it by hand with "
                               f"--weights-repo {repo}@COMMIT")
    return plan.commit


def prepare_submission(source_dir: str | os.PathLike, *, weights_ref: str | None = None,
                       push_to: str | None = None, push_now: bool = True, entry_id: str | None = None,
                       name: str | None = None, task_family: str = "other", paper: str | None = None,
                       code: str | None = None, submitter: str, pretraining: str,
                       extra_training_data: Sequence[str] = (), re_ranking: bool = False, tta: Sequence[str] = (),
                       query_expansion: bool = False, notes: str = "", dataset_release: str | None = None,
                       sha256: str | None = None, snapshot: Snapshot | None = None,
                       registry: Registry | None = None, cross_results: str | os.PathLike | None = None) -> Submission:
    """Check everything about a submission that needs no dataset; raise one
    :class:`LeaderboardError` listing every problem found, else return the entry.

    The weights are either already on the Hub (`weights_ref`, ``ORG/NAME@COMMIT``) or pushed by this
    call once every check has passed (`push_to`, ``ORG/NAME[@BRANCH]``; not when `push_now` is False,
    as in a dry run), the entry then pinning the commit the push created. `cross_results`: a file
    `atzoo evaluate --cross` wrote with these weights, reported as the entry's cross-dataset figures."""
    if task_family not in TASK_FAMILIES:
        raise LeaderboardError(f"task family {task_family!r} is not one of {', '.join(TASK_FAMILIES)}")
    problem = weights_source_problem(weights_ref, push_to)
    if problem:
        raise LeaderboardError(problem)
    if push_to is not None:
        from atzoo.hub import parse_repo_ref

        try:
            repo, revision = parse_repo_ref(push_to)[0], UNPUSHED
        except HubError as error:
            raise LeaderboardError(f"--push: {error}") from None
    else:
        assert weights_ref is not None, "weights_source_problem requires --weights-repo or --push"
        repo, revision = parse_weights_ref(weights_ref)
    if sha256 is not None and not SHA256.fullmatch(sha256):
        raise LeaderboardError(f"--sha256 {sha256!r} is not a sha256 (64 hex digits)")
    from atzoo.hub import sha256_file

    with open_source(source_dir, dataset_release) as package:
        results = read_results(package)
        problems = results_problems(results, str(package.path / RESULTS))
        problems += _release_problems(package.config, dataset_release, package.path)
        num_params = count_parameters(read_safetensors_header(package.weights))
        local_sha = sha256_file(package.weights)
        if not problems:
            problems += provenance_problems(package, local_sha)
        weights_shown = _weights_shown(source_dir, package)
        if sha256 is not None and sha256.lower() != local_sha:
            problems.append(f"weights: the hash does not match the weights: --sha256 is {sha256}, "
                            f"{weights_shown} has {local_sha}")
        hub_problems, hub_notes = ([], []) if push_to is not None else _hub_problems(repo, revision, local_sha,
                                                                                     weights_shown)
        problems += hub_problems
        problems += _model_problems(package, registry)
        if problems:
            raise LeaderboardError(f"{source_dir} cannot be submitted:\n  " + "\n  ".join(problems))
        data = _entry_data(package, results, repo=repo, revision=revision, sha256=local_sha,
                           num_params=num_params, entry_id=entry_id, name=name, task_family=task_family,
                           paper=paper, code=code, submitter=submitter, pretraining=pretraining,
                           extra_training_data=extra_training_data, re_ranking=re_ranking, tta=tta,
                           query_expansion=query_expansion, notes=notes)
        if cross_results is not None:
            from atzoo.leaderboard.cross_verify import entry_cross_dataset

            data["cross_dataset"] = entry_cross_dataset(cross_results, local_sha)
        problems = entry_problems(data)
        if not problems:
            entry = Entry.model_validate(data)
            problems = duplicate_problems(entry, snapshot) if snapshot is not None else []
        if problems:
            raise LeaderboardError(f"{source_dir} cannot be submitted:\n  " + "\n  ".join(problems))
        if push_to is not None and push_now:
            commit = _push_weights(package, push_to)
            data["weights"]["revision"] = commit
            entry = Entry.model_validate(data)
            hub_notes.append(f"pushed the weights to {repo} at commit {commit}")
        elif push_to is not None:
            hub_notes.append(f"dry run: nothing pushed; the entry would pin the commit the push to {repo} creates")
    return Submission(entry, tuple(hub_notes))


def build_entry(source_dir: str | os.PathLike, *, submitter: str, pretraining: str, **options: Any) -> Entry:
    """The checked entry of a run or package (see :func:`prepare_submission` for the options)."""
    return prepare_submission(source_dir, submitter=submitter, pretraining=pretraining, **options).entry


def submit(source_dir: str | os.PathLike, leaderboard_dir: str | os.PathLike, **options: Any) -> Path:
    """Check a submission against the registry in `leaderboard_dir` and write its entry file."""
    snapshot = load_snapshot(leaderboard_dir)
    submission = prepare_submission(source_dir, snapshot=snapshot, **options)
    return write_entry(leaderboard_dir, submission.entry)


def next_step(path: Path, release: str) -> str:
    root = "SYNTHETIC_ROOT" if release == "synthetic" else f"AT_USTC_{release.upper()}_ROOT"
    who = "anyone (`atzoo synth` regenerates the dataset)" if release == "synthetic" else \
        f"a maintainer with AT-USTC's {release} release"
    return (f"Entry written to {path}.\nNext: open a pull request that adds this file. Then {who} runs "
            f"`atzoo leaderboard verify {path.stem} --data {root}`, which fetches the exact weights, "
            f"re-evaluates them and writes the verified block.")
