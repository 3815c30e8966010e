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
from atzoo.formats import (checked, json_type_name, model_data, permissions_from_umask, read_json, show_value, validate_data,
                           write_json, write_text_atomic)
from atzoo.formats.card import CardMetadata, render_card_metadata
from atzoo.formats.packageconfig import (CARD, CONFIG, PACKAGE_FILES, RESULTS, WEIGHTS, PackageConfig,
                                        MAX_CONFIG_BYTES, write_package_config)
from atzoo.formats.recipe import Provider
from atzoo.formats.runconfig import RunConfig
from atzoo.protocol import PROTOCOL_VERSION, SCENARIOS

if TYPE_CHECKING:
    import torch

    from atzoo.registry import Registry

FORMAT = "atzoo-model-1"
RUN_FORMAT = "atzoo-run-1"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
DATASET_RELEASES = ("403k", "135k", "synthetic")
SYNTHETIC_MANIFEST = "synthetic.json"
ANY_TIME = "Any-Time"
REQUIRED_METRICS = ("rank1", "mAP")
DEFAULT_LICENSE = "apache-2.0"
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


def aggregate_metrics(metrics: Any, source: str = "the run's metrics") -> dict[str, Any]:
    """Only the aggregate numbers of an evaluation: per scenario, Any-Time and mixed-test group, the
    numeric metrics. Anything else (lists, strings, per-image arrays) is dropped, so a results file
    can never carry image paths or per-query ranks."""
    if not isinstance(metrics, dict):
        raise FormatError(f"{source}: expected a JSON object with one entry per scenario, got "
                          f"{json_type_name(metrics)}", file=source)
    names = [s.name for s in SCENARIOS] + [ANY_TIME]
    result: dict[str, Any] = {"protocol_version": str(metrics.get("protocol_version", PROTOCOL_VERSION))}
    for name in names:
        if name not in metrics:
            raise PackageError(f"{source}: scenario {name!r} is missing; evaluate the run again "
                               f"(`atzoo evaluate RUN_DIR`)")
        if not isinstance(metrics[name], dict):
            raise FormatError(f"{source}: {name} = {show_value(metrics[name])}; expected an object of metrics "
                              f"(rank1, mAP, ...)", file=source)
        for key in REQUIRED_METRICS:
            value = metrics[name].get(key)
            if not _is_number(value):
                raise PackageError(f"{source}: {name}.{key} = {show_value(value)}; expected a finite number (a NaN "
                                   f"or missing metric is never shown as 0): evaluate the run again "
                                   f"(`atzoo evaluate RUN_DIR`)")
        result[name] = {k: v for k, v in metrics[name].items() if _is_number(v)}
    mixed = metrics.get("mixed")
    if isinstance(mixed, dict):
        result["mixed"] = {group: {k: v for k, v in values.items() if _is_number(v)}
                           for group, values in mixed.items() if isinstance(values, dict)}
    return result


def dataset_release_of(data_root: str | os.PathLike, release: str | None) -> str:
    """``synthetic`` for a generated dataset; otherwise the AT-USTC release the user names."""
    synthetic = (Path(data_root) / SYNTHETIC_MANIFEST).is_file()
    if synthetic:
        if release not in (None, "synthetic"):
            raise PackageError(f"the run was trained on the synthetic dataset at {data_root}, "
                               f"not on AT-USTC release {release!r}; drop --dataset-release")
        return "synthetic"
    if release not in ("403k", "135k"):
        raise PackageError(f"the run's dataset {data_root} is not synthetic: name its AT-USTC release with "
                           f"--dataset-release 403k or 135k (got {release!r})")
    return release


def _plugin_requirement(provider: Provider) -> dict[str, str]:
    return {"name": provider.plugin, "distribution": provider.distribution, "version": provider.version,
            "requires": requirement(provider.distribution, provider.version)}


def package_config(run_config: RunConfig, dataset_release: str) -> PackageConfig:
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
        dataset_fingerprint=run_config.dataset_fingerprint,
        recipe=recipe,
    )


def _percent(value: Any) -> float:
    return round(100.0 * float(value), 2)


def model_card(config: dict[str, Any], results: dict[str, Any], license: str) -> str:
    """README.md with Hub metadata: licence, library, model-index (one result per scenario)."""
    release = config["dataset_release"]
    dataset_name = "synthetic AT-USTC layout" if release == "synthetic" else f"AT-USTC ({release} release)"
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
        "license": license, "library_name": "atzoo",
        "tags": ["person-reid", "anytime-person-reid", "at-ustc", "atzoo", config["method"].rpartition(":")[2]],
        "model-index": [{"name": f"atzoo {config['method']}", "results": index_results}],
    }, CardMetadata, "the model card's metadata", upgrade=False)
    train = config["recipe"]["train"]
    rows = "\n".join(f"| {name} | {_percent(results[name]['rank1']):.2f} | "
                     f"{_percent(results[name]['mAP']):.2f} |"
                     for name in [s.name for s in SCENARIOS] + [ANY_TIME])
    losses = ", ".join(f"{term['loss']} x {term['weight']}" for term in config["recipe"]["losses"])
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

## Training

Optimizer {train['optimizer']}, lr {train['lr']}, {train['epochs']} epoch(s), batches of
{train['num_persons']} persons x {train['num_instances']} images, input {config['input_size'][0]}x{config['input_size'][1]},
losses: {losses}. The package holds weights and aggregate metrics only; no image of the dataset.

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
               overwrite: bool = False, license: str = DEFAULT_LICENSE) -> Path:
    """Write a model package of a finished, evaluated run to `out_dir` and return its path.

    Everything is written into a temporary sibling folder, checked by the upload guard, and only
    then renamed to `out_dir`, so a failure never leaves a half-written or mixed package.
    """
    from atzoo.uploadguard import guard
    from atzoo.runner.rundir import METRICS_FILE, MODEL, open_run_dir

    out = Path(out_dir)
    _prepare_out_dir(out, Path(run_dir), overwrite)
    run = open_run_dir(run_dir, need=("config.json", MODEL))
    if not run.file(METRICS_FILE).is_file():
        raise PackageError(f"run directory {run.path} has no {METRICS_FILE}; evaluate it first (`atzoo evaluate`)")
    run_config = run.read_config()
    release = dataset_release_of(run_config.data_root, dataset_release)
    check_weights_readable(run.file(MODEL))
    config = package_config(run_config, release)
    results = aggregate_metrics(read_json(run.file(METRICS_FILE)), str(run.file(METRICS_FILE)))
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
    if isinstance(config, dict) and config.get("format") == RUN_FORMAT:
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
