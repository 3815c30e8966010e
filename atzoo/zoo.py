"""The zoo: pretrained weights that plugins register, the packages shipped with atzoo, and
`create_model` with timm-like tags.

```python
atzoo.create_model("uniat")                                 # fresh model (random weights)
atzoo.create_model("uniat", pretrained="403k")              # registered weights, checked by sha256
atzoo.create_model("baseline", pretrained="synthetic-demo") # shipped with atzoo, no download
```

The shipped package (`SYNTHETIC_DEMO`) was trained on the synthetic dataset only: it makes the
demo and the examples work on a fresh install, offline, and is never an AT-USTC result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atzoo.errors import AtzooError, PackageError
from atzoo.package import ANY_TIME
from atzoo.protocol import SCENARIOS

if TYPE_CHECKING:
    from torch import nn

    from atzoo.registry import Registry

ZOO_METRICS = tuple(s.name for s in SCENARIOS) + (ANY_TIME,)
SHIPPED_DIR = Path(__file__).resolve().parent / "zoo_packages"
SYNTHETIC_RELEASE = "synthetic"


@dataclass(frozen=True)
class ShippedPackage:
    """A model package that ships inside atzoo (package data): trained on synthetic data only."""

    name: str
    method: str
    tag: str
    folder: str
    sha256: str
    recipe_command: str
    description: str

    @property
    def path(self) -> Path:
        return SHIPPED_DIR / self.folder


SYNTHETIC_DEMO = ShippedPackage(
    name="baseline-synthetic-demo", method="builtins:baseline", tag="synthetic-demo",
    folder="baseline-synthetic-demo",
    sha256="7a0e7a76af1d958e82412ca96ea04389db0809cf78fed5fd4061d91782f54a5f",
    recipe_command=("export OMP_NUM_THREADS=2\n"
                    "atzoo synth data/synthetic-atustc --quiet\n"
                    "atzoo train baseline --data data/synthetic-atustc --out runs/demo --set epochs=10\n"
                    "atzoo export runs/demo packages/baseline-synthetic-demo\n"
                    "sha256sum packages/baseline-synthetic-demo/model.safetensors"),
    description="baseline (tiny_cnn) trained 10 epochs on the default synthetic dataset: for the demo and "
                "the examples; synthetic data only, not an AT-USTC result")
"""The demo's default model. `recipe_command` reproduces its weights bit for bit (same torch, same
kind of CPU, two threads): see docs/weights.md."""

SHIPPED: tuple[ShippedPackage, ...] = (SYNTHETIC_DEMO,)


QUICKSTART_RUN = Path("runs/quickstart")
"""Where `atzoo quickstart` writes its run (a timestamped sibling when it exists)."""


@dataclass(frozen=True)
class LocalModel:
    """A model found on this machine: a package pulled into the Hub cache, or a finished run."""

    label: str
    path: Path


def pulled_packages() -> list[LocalModel]:
    """Model packages in the local Hugging Face Hub cache (`atzoo pull`), one per cached revision."""
    from huggingface_hub import constants, scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    from atzoo.package import CONFIG, PACKAGE_KIND, WEIGHTS, config_kind
    from atzoo.io import read_json

    try:
        cache = scan_cache_dir(constants.HF_HUB_CACHE)
    except (CacheNotFound, OSError):
        return []
    found = []
    for repo in sorted(cache.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        for revision in sorted(repo.revisions, key=lambda r: r.commit_hash):
            folder = Path(revision.snapshot_path)
            if not (folder / WEIGHTS).is_file() or not (folder / CONFIG).is_file():
                continue
            try:
                config = read_json(folder / CONFIG)
            except (OSError, ValueError, RecursionError):
                continue
            if config_kind(config) == PACKAGE_KIND:
                found.append(LocalModel(f"pulled {repo.repo_id}@{revision.commit_hash[:12]}", folder))
    return found


def quickstart_run(base: Path | None = None) -> LocalModel | None:
    """The newest finished run of `atzoo quickstart` under ``base`` (default: the working folder)."""
    root = (base or Path.cwd()) / QUICKSTART_RUN
    candidates = [root, *root.parent.glob(f"{root.name}-*")] if root.parent.is_dir() else []
    finished = [path for path in candidates if (path / "model.safetensors").is_file() and (path / "config.json").is_file()]
    if not finished:
        return None
    newest = max(finished, key=lambda path: (path / "model.safetensors").stat().st_mtime)
    return LocalModel(f"quickstart run ({newest.name})", newest)


def demo_package_path() -> Path:
    """The folder of the shipped synthetic-data demo package (use with ``atzoo.load``)."""
    return SYNTHETIC_DEMO.path


def check_shipped(package: ShippedPackage) -> Path:
    """The package's folder, once its weights are checked against the recorded sha256."""
    weights = package.path / "model.safetensors"
    if not weights.is_file():
        raise PackageError(f"the shipped package {package.name} is missing {weights}; reinstall atzoo")
    from atzoo.hub import sha256_file

    actual = sha256_file(weights)
    if actual != package.sha256:
        raise PackageError(f"{weights} has sha256 {actual}, not the shipped {package.sha256}; reinstall atzoo")
    return package.path


def _shipped_row(package: ShippedPackage) -> dict[str, Any]:
    from atzoo.io import read_json

    results = read_json(package.path / "results.json")
    return {
        "name": package.name, "qualified_name": f"atzoo:{package.name}", "method": package.method.split(":")[-1],
        "tag": package.tag, "repo_id": "", "revision": "", "filename": "model.safetensors",
        "sha256": package.sha256, "license": "apache-2.0", "dataset_release": SYNTHETIC_RELEASE,
        "plugin": "builtins", "distribution": "atzoo", "description": package.description,
        "source": "shipped", "path": str(package.path),
        "metrics": {name: dict(results[name]) for name in ZOO_METRICS if isinstance(results.get(name), dict)},
    }


def _shipped_for(method_qualified_name: str) -> dict[str, ShippedPackage]:
    return {package.tag: package for package in SHIPPED if package.method == method_qualified_name}


def _registry(registry: Registry | None) -> Registry:
    from atzoo.registry import load_registry

    return registry or load_registry()


def list_pretrained(registry: Registry | None = None) -> list[dict[str, Any]]:
    """One row per shipped package and per registered PretrainedWeights: where it lives
    (``source`` ``shipped`` with a ``path``, or ``hub`` with a repo and revision), its dataset
    release (``synthetic`` for the shipped ones) and its six-scenario metrics."""
    registry = _registry(registry)
    rows = [_shipped_row(package) for package in SHIPPED]
    for entry in registry.entries("weights"):
        item = entry.item
        rows.append({
            "name": entry.name, "qualified_name": entry.qualified_name, "method": item.method, "tag": item.tag,
            "repo_id": item.repo_id, "revision": item.revision, "filename": item.filename, "sha256": item.sha256,
            "license": item.license, "dataset_release": item.dataset_release, "plugin": entry.plugin,
            "distribution": entry.distribution, "description": item.description, "source": "hub", "path": "",
            "metrics": {name: dict(item.metrics[name]) for name in ZOO_METRICS
                        if isinstance(item.metrics.get(name), dict)},
        })
    return rows


def pretrained_tags(method: str, registry: Registry | None = None) -> dict[str, Any]:
    """Tag -> PretrainedWeights of `method` (any name that resolves to it)."""
    registry = _registry(registry)
    return {entry.item.tag: entry.item for entry in registry.weights_for(method)}


def _pick_weights(method: str, pretrained: bool | str, registry: Registry) -> Any:
    """The registered weights or shipped package of ``method`` that ``pretrained`` names. ``True``
    prefers registered weights; a shipped (synthetic-data) package only when there is none."""
    registered = pretrained_tags(method, registry)
    shipped = _shipped_for(registry.get("methods", method).qualified_name)
    tags: dict[str, Any] = {**shipped, **registered}
    if not tags:
        raise AtzooError(f"method {method!r} has no registered pretrained weights (see `atzoo zoo list`)")
    valid = ", ".join(sorted(tags))
    if pretrained is True:
        candidates = registered or shipped
        if len(candidates) == 1:
            return next(iter(candidates.values()))
        if "default" in candidates:
            return candidates["default"]
        raise AtzooError(f"method {method!r} has several pretrained tags; choose one: pretrained={valid}")
    if not isinstance(pretrained, str) or pretrained not in tags:
        raise AtzooError(f"unknown pretrained tag {pretrained!r} for method {method!r}; valid tags: {valid}")
    return tags[pretrained]


def create_model(name: str, pretrained: bool | str = False, *, registry: Registry | None = None,
                 num_persons: int = 1, num_clothes: int = 1, overrides: dict[str, Any] | None = None,
                 cache_dir: str | None = None, device: str = "cpu") -> nn.Module:
    """A method's model, like ``timm.create_model``.

    ``pretrained=False`` builds it with fresh weights (`num_persons`/`num_clothes` size the
    classifiers, which only training uses; `overrides` as ``atzoo train --set``). A tag (or
    ``True`` when the method has one tag or a ``default`` one) downloads the registered weights at
    their pinned revision, checks their sha256 and loads them strictly; a shipped package's tag
    (``synthetic-demo``) loads it from atzoo's own files, with no download. A wrong tag is an error
    listing the valid ones.
    """
    from atzoo.hub import pull
    from atzoo.package import build_package_model, read_package

    registry = _registry(registry)
    method_entry = registry.get("methods", name)
    if pretrained is False or pretrained is None:
        from atzoo.runner.recipe import build_model, resolve_recipe

        recipe = resolve_recipe(method_entry.qualified_name, dict(overrides or {}), registry)
        return build_model(recipe, num_persons, num_clothes, registry).to(device)
    weights = _pick_weights(name, pretrained, registry)
    if isinstance(weights, ShippedPackage):
        return build_package_model(read_package(check_shipped(weights)), registry).to(device)
    pulled = pull(weights.repo_id, revision=weights.revision, sha256=weights.sha256, filename=weights.filename,
                  cache_dir=cache_dir, registry=registry)
    package = read_package(pulled.path)
    package_method = registry.get("methods", package.config["method"]).qualified_name
    if package_method != method_entry.qualified_name:
        raise PackageError(f"weights {weights.repo_id}@{weights.revision} are for method {package_method}, "
                           f"not {method_entry.qualified_name}")
    return build_package_model(package, registry).to(device)
