"""Verification: the exact weights of an entry re-evaluated by the shared runner on a local dataset.

The weights are fetched at the entry's pinned commit and checked against its sha256, the model is
rebuilt from the package's config, and the runner's own evaluation path (the protocol's test
images, the same feature extraction and the six-scenario evaluator) measures it. Every reported
metric is compared with the measured one; the outcome is written to the entry's ``verified``
block. Only aggregates are written: percentages, versions, the device type, a short message.

The default tolerance is 0.5 percentage points. Evaluating the same weights on the same data is
deterministic up to floating-point accumulation order (CPU vs GPU kernels, batch sizes, bf16
autocast on CUDA), which moves a metric on AT-USTC's thousands of queries by a few hundredths of a
point; the printed numbers are rounded to 0.01. Half a point absorbs that, yet is far below the
gains a paper claims, so a number that was edited or produced with an undisclosed trick fails.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
from importlib import metadata
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atzoo.errors import AtzooError, DataError, HubError, LeaderboardError
from atzoo.leaderboard.cross_verify import cross_differences, cross_targets, measure_cross, unavailable
from atzoo.formats.entry import METRICS, Entry, Metrics, Verified, metrics_from_fractions
from atzoo.leaderboard.signing import Signer, check_signer, sign_verified
from atzoo.leaderboard.store import read_entry, update_entry
from atzoo.package import SYNTHETIC_MANIFEST, ModelPackage
from atzoo.protocol import SCENARIO_NAMES
from atzoo.runner.cross_evaluation import CrossTarget

if TYPE_CHECKING:
    import torch

    from atzoo.data import Records
    from atzoo.registry import Registry

DEFAULT_TOLERANCE = 0.5
"""Percentage points; see the module docstring for why."""
WORST_SHOWN = 3
STATUS_RANK = {"failed": 0, "mismatch": 1, "verified": 2}


def _device(device: str | None) -> torch.device:
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError as error:
        raise LeaderboardError(f"--device {device!r} is not a torch device ({error})") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise LeaderboardError(f"--device {device!r}: CUDA is not available on this machine")
    return chosen


def check_release(data_root: Path, release: str) -> None:
    """A synthetic root verifies synthetic entries only, and an AT-USTC root only AT-USTC entries."""
    synthetic = (data_root / SYNTHETIC_MANIFEST).is_file()
    if synthetic and release != "synthetic":
        raise LeaderboardError(f"{data_root} is a synthetic dataset, but the entry was evaluated on AT-USTC "
                               f"release {release}; verify it with that release's root")
    if not synthetic and release == "synthetic":
        raise LeaderboardError(f"{data_root} is not a synthetic dataset (no {SYNTHETIC_MANIFEST}), but the entry "
                               f"was evaluated on the synthetic release; generate it with `atzoo synth`")


def check_fingerprint(data_root: Path, records: Records, entry: Entry) -> None:
    """A synthetic entry is verified only on the synthetic dataset it was measured on (same preset
    and seed), as recorded at submission. An AT-USTC copy's fingerprint may legitimately differ from
    the submitter's (another copy of the release), so it is not compared."""
    from atzoo.data.cache import dataset_fingerprint

    expected = entry.dataset.fingerprint
    if entry.dataset.release != "synthetic" or expected is None:
        return
    actual = dataset_fingerprint(records)
    if actual != expected:
        raise LeaderboardError(f"{data_root} is not the synthetic dataset entry {entry.id} was measured on "
                               f"(dataset fingerprint {actual[:12]}..., the entry records {expected[:12]}...); "
                               f"generate it with the same `atzoo synth` preset and seed")


def fetch_weights(entry: Entry, cache_dir: str | os.PathLike | None = None) -> ModelPackage:
    """The entry's package at its pinned commit, its weights checked against the entry's sha256."""
    from atzoo.hub import pull
    from atzoo.package import read_package

    weights = entry.weights
    if weights is None:
        raise LeaderboardError(f"entry {entry.id} names no weights (reported numbers only); there is nothing to fetch")
    try:
        pulled = pull(weights.repo, revision=weights.revision, sha256=weights.sha256, filename=weights.filename,
                      cache_dir=cache_dir, sha256_source="the entry's weights.sha256")
    except HubError as error:
        raise LeaderboardError(f"entry {entry.id}: cannot fetch its exact weights: {error}") from None
    return read_package(pulled.path)


def _require_method(package: ModelPackage, registry: Registry) -> None:
    """A method that is not installed here is the verifier's problem, not the entry's: refuse."""
    method = package.config["method"]
    try:
        registry.get("methods", method)
    except AtzooError as error:
        requires = (package.config.get("plugin") or {}).get("requires") or "the plugin that provides it"
        raise LeaderboardError(f"cannot verify: method {method!r} is not installed here ({error}); "
                               f"pip install \"{requires}\"") from None


def measure_package(package: ModelPackage, data_root: str | os.PathLike, *, device: str | None = None,
                    registry: Registry | None = None, progress: bool = True) -> dict[str, Any]:
    """The runner's six-scenario results (fractions) of a package's model on `data_root`.

    This is :func:`atzoo.runner.evaluation.evaluate_model`, the path ``atzoo evaluate`` takes, with
    the model rebuilt from the package rather than from a run directory.
    """
    return _measure(package, _test_records(Path(data_root)), _device(device), registry, progress)


def _measure(package: ModelPackage, records: Records, torch_device: torch.device, registry: Registry | None,
             progress: bool, cross: Sequence[CrossTarget] = ()) -> dict[str, Any]:
    """The six-scenario results; with `cross`, also the cross-dataset figures under ``"cross"``."""
    from atzoo.package import build_package_model
    from atzoo.registry import load_registry
    from atzoo.runner.distributed import Context
    from atzoo.runner.evaluation import evaluate_model

    registry = registry or load_registry()
    recipe = package.spec.recipe
    model = build_package_model(package, registry).to(torch_device)
    context = Context(rank=0, world_size=1, local_rank=0, device=torch_device)
    measured = evaluate_model(model, records, recipe, context, progress=progress)
    assert measured is not None, "a single process is rank 0, which gets the results"
    if cross:
        measured = {**measured, "cross": measure_cross(package, model, cross, context, progress)}
    return measured


def _test_records(data_root: Path) -> Records:
    """The dataset's records, its six scenarios' sets checked before any weights are fetched."""
    from atzoo.data import parse_root
    from atzoo.data.sets import require_test_sets

    records = parse_root(data_root)
    require_test_sets(records)
    return records


def compare(reported: Metrics, measured: Metrics) -> tuple[float, list[tuple[float, str]]]:
    """(max |difference|, every difference with its description), over the reported metrics."""
    differences = []
    for name in SCENARIO_NAMES:
        claimed, found = reported.scenario(name), measured.scenario(name)
        for metric in METRICS:
            value = getattr(claimed, metric)
            if value is None:
                continue
            got = getattr(found, metric)
            difference = round(abs(value - got), 4)
            differences.append((difference, f"{name} {metric}: reported {value:.2f}, measured {got:.2f}"))
    return max(d for d, _ in differences), differences


def environment(device: str, package: ModelPackage) -> dict[str, str]:
    """Versions and the device type: nothing that identifies the machine or the data."""
    import torch

    def version(distribution: str) -> str:
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            return "not installed"

    info = {"atzoo": version("atzoo"), "torch": torch.__version__, "python": platform.python_version(),
            "device": device}
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    distribution = (package.config.get("plugin") or {}).get("distribution")
    if distribution:
        info["plugin"] = f"{distribution} {version(distribution)}"
    return info


def _plugin_version_note(entry: Entry) -> str:
    """Said in the message when the plugin installed here is not the version the entry was made with:
    a method's code can change between releases, and the verifier should know which one ran."""
    distribution, wanted = entry.method.plugin_distribution, entry.method.plugin_version
    if not distribution or not wanted:
        return ""
    try:
        installed = metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return ""
    if installed == wanted:
        return ""
    return f" (evaluated with {distribution} {installed}; the entry was made with {wanted})"


def _scrub(message: str, *paths: Path) -> str:
    """An error message without local paths (the data root, the cache, the home folder)."""
    for path in sorted({str(p) for p in paths if p} | {str(Path.home())}, key=len, reverse=True):
        message = message.replace(path, "<local>")
    return message.splitlines()[0][:500] if message else "evaluation failed"


def _outcome(entry: Entry, measured: dict[str, Any], tolerance: float) -> tuple[str, Metrics, float, str]:
    metrics = Metrics.model_validate(metrics_from_fractions(measured))
    worst, differences = compare(entry.reported, metrics)
    if "cross" in measured:
        differences += cross_differences(entry, measured["cross"])
        worst = max(d for d, _ in differences)
    if worst <= tolerance:
        return "verified", metrics, worst, (f"all {len(differences)} reported metrics within {tolerance} points "
                                            f"of the measured ones")
    outliers = sorted((d for d in differences if d[0] > tolerance), reverse=True)
    shown = "; ".join(text for _, text in outliers[:WORST_SHOWN])
    more = f" (and {len(outliers) - WORST_SHOWN} more)" if len(outliers) > WORST_SHOWN else ""
    return "mismatch", metrics, worst, f"{len(outliers)} metric(s) beyond {tolerance} points: {shown}{more}"


def _replacement_note(previous: Verified | None, status: str) -> str:
    """Said in the new message when a worse status replaces an earlier, better one."""
    if previous is None or STATUS_RANK[status] >= STATUS_RANK[previous.status]:
        return ""
    return f" (replaces a {previous.status!r} result of {previous.date.date().isoformat()})"


def verify_entry(entry_path: str | os.PathLike, data_root: str | os.PathLike, *, signer: Signer,
                 tolerance: float = DEFAULT_TOLERANCE, device: str | None = None, registry: Registry | None = None,
                 progress: bool = True, cache_dir: str | os.PathLike | None = None,
                 registry_dir: str | os.PathLike | None = None,
                 cross: Sequence[tuple[str, str | os.PathLike]] = ()) -> Entry:
    """Re-evaluate an entry's exact weights on `data_root` and write its ``verified`` block, signed by
    `signer`, who must be listed in the ``verifiers.json`` of `registry_dir` (default: the registry
    holding the entry file).

    Status ``verified`` when every reported metric is within `tolerance` percentage points of the
    measured one, ``mismatch`` otherwise, ``failed`` when the model cannot be evaluated. Problems
    that are not the entry's (missing files, a dataset of another release or another synthetic
    dataset, a plugin not installed, weights that do not match the sha256) raise
    :class:`LeaderboardError` and write nothing. A worse status than the entry's earlier one says in
    its message what it replaced.

    `cross` (layout name, root) pairs re-measure the entry's reported cross-dataset figures on the
    public datasets the verifier has, under the same tolerance; the verified block records them and
    names the reported ones it could not re-measure (:mod:`atzoo.leaderboard.cross_verify`).
    """
    from atzoo.registry import load_registry

    entry_path = Path(entry_path)
    data_root = Path(data_root)
    check_signer(registry_dir if registry_dir is not None else entry_path.resolve().parent.parent, signer)
    entry = read_entry(entry_path)
    if entry.weights is None:
        raise LeaderboardError(f"entry {entry.id} is a {entry.origin} row without weights: there is nothing to "
                               f"re-evaluate, so it stays marked as reported")
    if not math.isfinite(tolerance) or tolerance < 0:
        raise LeaderboardError(f"--tolerance must be a non-negative number of percentage points, got {tolerance}")
    if not data_root.is_dir():
        raise LeaderboardError(f"{data_root}: no such dataset folder")
    check_release(data_root, entry.dataset.release)
    torch_device = _device(device)
    try:
        records = _test_records(data_root)
        check_fingerprint(data_root, records, entry)
    except DataError as error:
        raise LeaderboardError(f"cannot verify on {data_root}: {error}") from None
    targets = cross_targets(entry, cross)
    registry = registry or load_registry()
    package = fetch_weights(entry, cache_dir)
    _require_method(package, registry)
    cross_measured, cross_missing = None, []
    try:
        measured = _measure(package, records, torch_device, registry, progress, targets)
        status, metrics, worst, message = _outcome(entry, measured, tolerance)
        if targets:
            cross_measured = measured["cross"]
            cross_missing = unavailable(entry, cross_measured)
            message += (f"; cross-dataset re-measured on {', '.join(cross_measured.datasets) or 'no dataset'}"
                        + (f", not available here: {', '.join(cross_missing)}" if cross_missing else ""))
    except (AtzooError, RuntimeError, ValueError) as error:
        status, metrics, worst = "failed", None, None
        message = _scrub(str(error), data_root.resolve(), data_root, package.path,
                         *(target.root for target in targets))
    message += _plugin_version_note(entry) + _replacement_note(entry.verified, status)
    verified = Verified(status=status, date=dt.datetime.now(dt.timezone.utc).replace(microsecond=0),
                        tolerance=tolerance, metrics=metrics, max_difference=worst,
                        environment=environment(torch_device.type, package), message=message,
                        cross_dataset=cross_measured, cross_unavailable=cross_missing)
    return update_entry(entry_path, verified=sign_verified(entry, verified, signer))
