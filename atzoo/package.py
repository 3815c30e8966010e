"""Model packages: a trained run's weights made shareable, and loaded back without pickle.

```
PACKAGE/
  model.safetensors   the model's weights (nothing else: no optimizer, no data)
  config.json         what rebuilds the model through the registry (method, backbone, plugin
                      distribution and version range, model arguments, input size, normalisation,
                      heads), the protocol version and the dataset release
  results.json        aggregate metrics only (six scenarios, Any-Time, mixed test)
  README.md           the model card a hub shows (licence, model-index results, citation)
```
A package never holds per-image data: no image, no path, no per-query rank.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atzoo.errors import AtzooError, FormatError, PackageError
from atzoo.formats import (checked, model_data, permissions_from_umask, read_json, validate_data,
                           write_json, write_text_atomic)
from atzoo.formats.card import CardMetadata, render_card_metadata
from atzoo.formats.metrics import Results, read_results
from atzoo.formats.packageconfig import (CARD, CONFIG, PACKAGE_FILES, RESULTS, WEIGHTS, PackageConfig,
                                        MAX_CONFIG_BYTES, write_package_config)
from atzoo.formats.recipe import Provider
from atzoo.formats.runconfig import RunConfig
from atzoo.protocol import SCENARIOS

if TYPE_CHECKING:
    import torch

    from atzoo.registry import Registry

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
DATASET_RELEASES = ("403k", "135k", "synthetic")
SYNTHETIC_MANIFEST = "synthetic.json"
PACKAGE_KIND = "package"
FORMAT = str(PackageConfig.version_value(PackageConfig.FORMAT_VERSION))
RUN_FORMAT = str(RunConfig.version_value(RunConfig.FORMAT_VERSION))
RUN_KIND = "run"


def config_kind(config: Any) -> str:
    """What a parsed `config.json` belongs to, by its `format` tag, whatever its version:
    `PACKAGE_KIND` (``atzoo-model-N``), `RUN_KIND` (``atzoo-run-N``), or "" (neither)."""
    tag = config.get("format") if isinstance(config, dict) else None
    if isinstance(tag, str) and tag.startswith(PackageConfig.VERSION_PREFIX):
        return PACKAGE_KIND
    if isinstance(tag, str) and tag.startswith(RunConfig.VERSION_PREFIX):
        return RUN_KIND
    return ""
ANY_TIME = "Any-Time"
OPEN_DEFAULT_LICENSE = "apache-2.0"
RESEARCH_LICENSE_NAME = "at-ustc-research-only"
RESEARCH_DEFAULT_LICENSE = "other"
NON_COMMERCIAL_LICENSES = ("other", "cc-by-nc-4.0", "cc-by-nc-sa-4.0", "cc-by-nc-nd-4.0")
"""Hub licence ids a model trained or evaluated on AT-USTC may carry: its release agreement allows
research use only and forbids commercial use. ``other`` is written with ``license_name:
at-ustc-research-only``, the card stating those terms."""
RELEASE_TERMS = ("AT-USTC is released for non-commercial research use only: its release agreement forbids "
                 "commercial use and any redistribution of the images. These weights were trained on it, so "
                 "they are shared under the same terms: research use only, no commercial use.")
APPROX_RELEASE_IMAGES = {"135k": 135_000}
APPROX_TOLERANCE = 0.02
CITATION = """@inproceedings{li2025anytime,
  title     = {Towards Anytime Retrieval: A Benchmark for Anytime Person Re-Identification},
  author    = {Li, Xulin and Lu, Yan and Liu, Bin and Li, Jiaze and Yang, Qinhong and Gong, Tao and
               Chu, Qi and Ye, Mang and Yu, Nenghai},
  booktitle = {Proceedings of the International Joint Conference on Artificial Intelligence (IJCAI)},
  year      = {2025}
}"""


@dataclass(frozen=True)
class ModelPackage:
    """A package folder whose config has been read and checked (the weights are not loaded yet).
    `spec` is the checked `config.json`; `config` is the same in its JSON form."""

    path: Path
    spec: PackageConfig

    @property
    def config(self) -> dict[str, Any]:
        return model_data(self.spec)

    @property
    def weights(self) -> Path:
        return self.path / WEIGHTS

    @property
    def input_size(self) -> tuple[int, int]:
        return self.spec.input_size

    @property
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return self.spec.normalization


# ---------------------------------------------------------------------------------------------
# export


def requirement(distribution: str, version: str) -> str:
    """The pip requirement a package's plugin needs: same major version (same minor below 1.0)."""
    if not distribution:
        return ""
    parts = version.split(".")
    if not version or not parts[0].isdigit():
        return distribution
    major = int(parts[0])
    if major == 0 and len(parts) > 1 and parts[1].isdigit():
        return f"{distribution}>={version},<0.{int(parts[1]) + 1}"
    return f"{distribution}>={version},<{major + 1}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def package_release(results: Results, declared: str | None) -> str:
    """The release a package records: the one its results' provenance read off the data. A release
    named by the user must agree with it; ``135k`` (whose exact counts are not published) may name a
    custom root of about that size."""
    dataset = results.provenance.dataset
    if declared is None or declared == dataset.release:
        return dataset.release
    approximate = APPROX_RELEASE_IMAGES.get(declared)
    if dataset.release == "custom" and approximate and abs(dataset.image_count - approximate) <= APPROX_TOLERANCE * approximate:
        return declared
    raise PackageError(f"--dataset-release {declared}: the run's results were measured on {dataset.image_count} images "
                       f"recognised as release {dataset.release!r} (fingerprint {dataset.fingerprint[:12]}...); "
                       f"drop --dataset-release to package it as {dataset.release!r}")


def check_license(release: str, license: str) -> None:
    """Weights trained on AT-USTC (any release but ``synthetic``) carry a non-commercial licence."""
    if release != "synthetic" and license not in NON_COMMERCIAL_LICENSES:
        raise PackageError(f"--license {license}: these weights were trained on AT-USTC data (release {release}), "
                           f"whose release agreement allows research use only and forbids commercial use; choose "
                           f"one of {', '.join(NON_COMMERCIAL_LICENSES)} (default: other, {RESEARCH_LICENSE_NAME})")


def default_license(release: str) -> str:
    return OPEN_DEFAULT_LICENSE if release == "synthetic" else RESEARCH_DEFAULT_LICENSE


def run_results(run: Any) -> Results:
    """The run's own ``metrics.json``, refused unless it has provenance and was measured on the very
    weights file the run holds."""
    from atzoo.io import sha256_file
    from atzoo.runner.rundir import METRICS_FILE, MODEL

    try:
        results = read_results(run.file(METRICS_FILE))
    except FormatError as error:
        raise PackageError(f"{error}\nThe run's results cannot be shipped as they are: evaluate it again "
                           f"(`atzoo evaluate {run.path}`), which records their provenance") from None
    weights_sha = sha256_file(run.file(MODEL))
    if results.provenance.weights_sha256 != weights_sha:
        raise PackageError(f"{run.file(METRICS_FILE)} was measured on weights with sha256 "
                           f"{results.provenance.weights_sha256[:12]}..., but {run.file(MODEL)} has "
                           f"{weights_sha[:12]}...: evaluate the run again (`atzoo evaluate {run.path}`)")
    return results


def _plugin_requirement(provider: Provider) -> dict[str, str]:
    return {"name": provider.plugin, "distribution": provider.distribution, "version": provider.version,
            "requires": requirement(provider.distribution, provider.version)}


def package_config(run_config: RunConfig, dataset_release: str, dataset_fingerprint: str) -> PackageConfig:
    """A package's config.json from a run's config.json (the local data root is left out)."""
    recipe = run_config.recipe
    method, backbone = recipe.method, recipe.backbone
    return checked(
        PackageConfig, "the package config",
        method=method.qualified_name,
        backbone=backbone.qualified_name,
        plugin=_plugin_requirement(method),
        backbone_plugin=_plugin_requirement(backbone),
        backbone_args=recipe.backbone_args,
        input_size=recipe.input_size,
        normalization=recipe.normalization,
        num_heads=len(recipe.heads),
        heads=recipe.heads,
        neck=recipe.neck,
        embed_dim=recipe.embed_dim,
        num_persons=run_config.num_persons,
        num_clothes=run_config.num_clothes,
        protocol_version=run_config.protocol_version,
        dataset_release=dataset_release,
        dataset_fingerprint=dataset_fingerprint,
        recipe=recipe,
    )


def _percent(value: Any) -> float:
    return round(100.0 * float(value), 2)


def _dataset_name(release: str) -> str:
    if release == "synthetic":
        return "synthetic AT-USTC layout"
    if release == "custom":
        return "a custom AT-USTC-format collection"
    return f"AT-USTC ({release} release)"


def model_card(config: dict[str, Any], results: dict[str, Any], license: str) -> str:
    """README.md with Hub metadata: licence, library, model-index (one result per scenario), the
    results' provenance, and for AT-USTC-trained weights the release agreement's terms."""
    release = config["dataset_release"]
    dataset_name = _dataset_name(release)
    index_results = []
    for name in [s.name for s in SCENARIOS] + [ANY_TIME]:
        metrics = results[name]
        index_results.append({
            "task": {"type": "image-feature-extraction", "name": f"Anytime person re-identification, {name}"},
            "dataset": {"type": "at-ustc", "name": dataset_name, "split": name, "revision": release},
            "metrics": [{"type": key, "name": f"{name} {key}", "value": _percent(metrics[key])}
                        for key in ("rank1", "mAP", "mINP") if key in metrics],
        })
    metadata = validate_data({
        "license": license, **({"license_name": RESEARCH_LICENSE_NAME} if license == "other" else {}),
        "library_name": "atzoo",
        "tags": ["person-reid", "anytime-person-reid", "at-ustc", "atzoo", config["method"].rpartition(":")[2]],
        "model-index": [{"name": f"atzoo {config['method']}", "results": index_results}],
    }, CardMetadata, "the model card's metadata", upgrade=False)
    train = config["recipe"]["train"]
    rows = "\n".join(f"| {name} | {_percent(results[name]['rank1']):.2f} | "
                     f"{_percent(results[name]['mAP']):.2f} |"
                     for name in [s.name for s in SCENARIOS] + [ANY_TIME])
    losses = ", ".join(f"{term['loss']} x {term['weight']}" for term in config["recipe"]["losses"])
    provenance = results.get("provenance") or {}
    dataset = provenance.get("dataset") or {}
    terms = "" if release == "synthetic" else f"\n## Licence and terms\n\n{RELEASE_TERMS}\n"
    return f"""{render_card_metadata(metadata).rstrip()}

# {config['method']} (atzoo)

Weights of the method `{config['method']}` (backbone `{config['backbone']}`, {config['num_heads']} head(s))
for anytime person re-identification, trained and evaluated with the atzoo runner on the
{dataset_name}, protocol version {config['protocol_version']}.

```python
import atzoo
model = atzoo.load("PATH_OR_REPO_ID")   # needs: pip install "{config['plugin']['requires'] or 'atzoo'}"
```

## Results (Rank-1 / mAP, %)

| Scenario | Rank-1 | mAP |
|---|---|---|
{rows}

Measured by the atzoo evaluator {provenance.get('evaluator_version', '?')} on {dataset.get('image_count', '?')} images
(release {dataset.get('release', release)}, dataset fingerprint `{dataset.get('fingerprint', '?')}`) on
{provenance.get('date', '?')}, weights sha256 `{provenance.get('weights_sha256', '?')}`.

## Training

Optimizer {train['optimizer']}, lr {train['lr']}, {train['epochs']} epoch(s), batches of
{train['num_persons']} persons x {train['num_instances']} images, input {config['input_size'][0]}x{config['input_size'][1]},
losses: {losses}. The package holds weights and aggregate metrics only; no image of the dataset.
{terms}
## Citation

```bibtex
{CITATION}
```
"""


def check_weights_readable(path: Path) -> None:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            handle.keys()
    except (SafetensorError, OSError, ValueError) as error:
        raise PackageError(f"{path} cannot be read as safetensors ({error}); it is damaged or truncated") from None


def _prepare_out_dir(out: Path, run_dir: Path, overwrite: bool) -> None:
    from atzoo.outputs import PACKAGE, check_output_folder

    check_output_folder(out, PACKAGE, inputs=[run_dir], overwrite=overwrite)


def _swap_into_place(staged: Path, out: Path) -> None:
    """Move the finished package to `out` (`atzoo.outputs.replace_folder`: the old one stays until then)."""
    from atzoo.outputs import replace_folder

    replace_folder(staged, out)


def export_run(run_dir: str | os.PathLike, out_dir: str | os.PathLike, *, dataset_release: str | None = None,
               overwrite: bool = False, license: str | None = None) -> Path:
    """Write a model package of a finished, evaluated run to `out_dir` and return its path.

    Only results measured on the run's own weights file (by sha256) are shipped, with their
    provenance; the package's release is the one read off that data. The licence defaults to an
    open one for synthetic data and to AT-USTC's research-only terms otherwise, where an open
    licence is refused. Everything is written into a temporary sibling folder, checked by the
    upload guard, and only then renamed to `out_dir`, so a failure never leaves a half-written or
    mixed package.
    """
    from atzoo.uploadguard import guard
    from atzoo.runner.rundir import METRICS_FILE, MODEL, open_run_dir

    out = Path(out_dir)
    _prepare_out_dir(out, Path(run_dir), overwrite)
    run = open_run_dir(run_dir, need=("config.json", MODEL))
    if not run.file(METRICS_FILE).is_file():
        raise PackageError(f"run directory {run.path} has no {METRICS_FILE}; evaluate it first (`atzoo evaluate`)")
    run_config = run.read_config()
    check_weights_readable(run.file(MODEL))
    measured = run_results(run)
    release = package_release(measured, dataset_release)
    license = license or default_license(release)
    check_license(release, license)
    config = package_config(run_config, release, measured.provenance.dataset.fingerprint)
    results = measured.to_json()
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        os.chmod(staged, permissions_from_umask(executable=True))
        shutil.copyfile(run.file(MODEL), staged / WEIGHTS)
        write_package_config(staged / CONFIG, config)
        write_json(staged / RESULTS, results)
        write_text_atomic(staged / CARD, model_card(model_data(config), results, license))
        guard(staged, model_tensors=package_tensors)
        _swap_into_place(staged, out)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return out


# ---------------------------------------------------------------------------------------------
# loading


def refuse_pickle(path: Path) -> None:
    raise PackageError(f"{path} is a pickle file ({path.suffix}); atzoo never unpickles weights, because "
                       f"loading a pickle can run arbitrary code. Convert it to safetensors "
                       f"(safetensors.torch.save_model) and export a package with `atzoo export`")


def read_package(path: str | os.PathLike) -> ModelPackage:
    """Open a package folder (or its ``model.safetensors``) and check its config."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() in PICKLE_SUFFIXES:
            refuse_pickle(path)
        if path.name != WEIGHTS:
            raise PackageError(f"{path} is not a model package: expected a folder with {WEIGHTS} and {CONFIG}")
        path = path.parent
    if not path.is_dir():
        raise PackageError(f"{path}: no such model package folder")
    if not (path / WEIGHTS).is_file():
        pickles = sorted(p for p in path.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            refuse_pickle(pickles[0])
        raise PackageError(f"{path} has no {WEIGHTS}; a model package holds {', '.join(PACKAGE_FILES)}")
    if not (path / CONFIG).is_file():
        raise PackageError(f"{path} has no {CONFIG}; without it the model cannot be rebuilt")
    config = read_json(path / CONFIG, max_bytes=MAX_CONFIG_BYTES)
    if config_kind(config) == RUN_KIND:
        raise PackageError(f"{path} is a run directory (made by `atzoo train`), not a model package: export it "
                           f"first with `atzoo export {path} OUT_DIR` (`atzoo embed` and the app's demo also take "
                           f"the run directory itself)")
    return ModelPackage(path, validate_data(config, PackageConfig, str(path / CONFIG)))


def _require_plugin(package: ModelPackage, registry: Registry) -> None:
    """A missing plugin is named with the pip requirement that provides it."""
    for key in ("plugin", "backbone_plugin"):
        plugin = package.config.get(key) or {}
        name = plugin.get("name", "")
        info = next((p for p in registry.plugins if p.name == name), None)
        if info is not None and info.status == "ok":
            continue
        install = plugin.get("requires") or plugin.get("distribution")
        how = f"pip install \"{install}\"" if install else f"install the plugin that provides {name!r}"
        state = "is not installed" if info is None else f"did not load ({info.status}: {info.error})"
        raise PackageError(f"the model in {package.path} needs the atzoo plugin {name!r}, which {state}: {how}")


def build_package_architecture(package: ModelPackage, registry: Registry | None = None, *,
                               device: str = "meta") -> torch.nn.Module:
    """The model the package's config describes, built through the registry without its weights (on
    the meta device by default: shapes and dtypes only, no memory for the values)."""
    import torch

    from atzoo.registry import load_registry
    from atzoo.runner.recipe import build_model

    registry = registry or load_registry()
    _require_plugin(package, registry)
    try:
        registry.get("methods", package.config["method"])
    except AtzooError as error:
        raise PackageError(f"{package.path / CONFIG} names a method the registry does not know: {error}") from None
    with torch.device(device):
        return build_model(package.spec.recipe, package.spec.num_persons, package.spec.num_clothes, registry)


def package_tensors(folder: Path) -> dict[str, tuple[tuple[int, ...], str]] | None:
    """name -> (shape, safetensors dtype) of the model the package's config at `folder` describes,
    built without weights on the meta device (what the upload guard holds the weights to); None when
    the config cannot be read (the guard and the push report that on their own)."""
    from atzoo.uploadguard import TORCH_TO_SAFETENSORS

    try:
        package = read_package(folder)
    except AtzooError:
        return None
    model = build_package_architecture(package)
    return {name: (tuple(tensor.shape), TORCH_TO_SAFETENSORS.get(str(tensor.dtype).removeprefix("torch."), "?"))
            for name, tensor in model.state_dict().items()}


DTYPE_CLASSES = {"floating point": ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"),
                 "integer": ("I64", "I32", "I16", "I8", "U8", "U16", "U32", "U64"), "boolean": ("BOOL",)}


def _dtype_class(dtype: str) -> str:
    return next((name for name, members in DTYPE_CLASSES.items() if dtype in members), dtype)


def check_weights(model: Any, path: Path) -> None:
    """Every tensor of the weights file has the dtype class of the model's tensor it fills (an integer or
    boolean tensor is never cast into a float parameter), and every floating-point tensor is finite.
    Each problem is a `PackageError` naming the tensor."""
    import torch
    from safetensors import SafetensorError, safe_open

    from atzoo.uploadguard import TORCH_TO_SAFETENSORS

    expected = {name: TORCH_TO_SAFETENSORS.get(str(t.dtype).removeprefix("torch."), str(t.dtype))
                for name, t in model.state_dict().items()}
    try:
        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():
                stored = handle.get_slice(name).get_dtype()
                wanted = expected.get(name)
                if wanted is not None and _dtype_class(stored) != _dtype_class(wanted):
                    raise PackageError(f"{path}: tensor {name!r} is {_dtype_class(stored)} ({stored}) but the model's "
                                       f"{name} is {_dtype_class(wanted)} ({wanted}); it is not cast: re-export the "
                                       f"package from the run")
                if _dtype_class(stored) == "floating point":
                    tensor = handle.get_tensor(name)
                    if not bool(torch.isfinite(tensor).all()):
                        bad = int((~torch.isfinite(tensor)).sum())
                        raise PackageError(f"{path}: tensor {name!r} holds {bad} NaN or infinite value(s); the "
                                           f"weights are damaged (a diverged training run?)")
    except SafetensorError as error:
        raise PackageError(f"{path} cannot be read ({error}); it is damaged or truncated") from None


def build_package_model(package: ModelPackage, registry: Registry | None = None) -> torch.nn.Module:
    """The package's model rebuilt through the registry with its weights loaded strictly (dtype classes
    and finiteness checked per tensor first), in eval mode on the CPU. ``model.atzoo_config`` is the
    package's config."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    model = build_package_architecture(package, registry, device="cpu")
    check_weights(model, package.weights)
    try:
        load_model(model, str(package.weights), strict=True)
    except (SafetensorError, OSError) as error:
        raise PackageError(f"{package.weights} cannot be read ({error}); it is damaged or truncated") from None
    except RuntimeError as error:
        raise PackageError(f"{package.weights} does not match the model its config describes "
                           f"(missing or unexpected keys): {error}") from None
    model.eval()
    setattr(model, "atzoo_config", package.config)  # noqa: B010 - nn.Module types its attributes as tensors or modules
    return model
