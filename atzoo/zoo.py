"""The zoo: pretrained weights that plugins register, and `create_model` with timm-like tags.

```python
atzoo.create_model("uniat")                      # fresh model (random weights)
atzoo.create_model("uniat", pretrained="403k")   # registered weights, checked by sha256
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from atzoo.errors import AtzooError, PackageError
from atzoo.package import ANY_TIME
from atzoo.protocol import SCENARIOS

if TYPE_CHECKING:
    import torch

    from atzoo.registry import Registry

ZOO_METRICS = tuple(s.name for s in SCENARIOS) + (ANY_TIME,)


def _registry(registry: Registry | None) -> Registry:
    from atzoo.registry import load_registry

    return registry or load_registry()


def list_pretrained(registry: Registry | None = None) -> list[dict[str, Any]]:
    """One row per registered PretrainedWeights: where it lives and its six-scenario metrics."""
    registry = _registry(registry)
    rows = []
    for entry in registry.entries("weights"):
        item = entry.item
        rows.append({
            "name": entry.name, "qualified_name": entry.qualified_name, "method": item.method, "tag": item.tag,
            "repo_id": item.repo_id, "revision": item.revision, "filename": item.filename, "sha256": item.sha256,
            "license": item.license, "dataset_release": item.dataset_release, "plugin": entry.plugin,
            "distribution": entry.distribution, "description": item.description,
            "metrics": {name: dict(item.metrics[name]) for name in ZOO_METRICS
                        if isinstance(item.metrics.get(name), dict)},
        })
    return rows


def pretrained_tags(method: str, registry: Registry | None = None) -> dict[str, Any]:
    """Tag -> PretrainedWeights of `method` (any name that resolves to it)."""
    registry = _registry(registry)
    return {entry.item.tag: entry.item for entry in registry.weights_for(method)}


def _pick_weights(method: str, pretrained: bool | str, registry: Registry) -> Any:
    tags = pretrained_tags(method, registry)
    if not tags:
        raise AtzooError(f"method {method!r} has no registered pretrained weights (see `atzoo zoo list`)")
    valid = ", ".join(sorted(tags))
    if pretrained is True:
        if len(tags) == 1:
            return next(iter(tags.values()))
        if "default" in tags:
            return tags["default"]
        raise AtzooError(f"method {method!r} has several pretrained tags; choose one: pretrained={valid}")
    if not isinstance(pretrained, str) or pretrained not in tags:
        raise AtzooError(f"unknown pretrained tag {pretrained!r} for method {method!r}; valid tags: {valid}")
    return tags[pretrained]


def create_model(name: str, pretrained: bool | str = False, *, registry: Registry | None = None, num_persons: int = 1,
                 num_clothes: int = 1, overrides: dict[str, Any] | None = None, cache_dir: str | None = None,
                 device: str = "cpu") -> torch.nn.Module:
    """A method's model, like ``timm.create_model``.

    ``pretrained=False`` builds it with fresh weights (`num_persons`/`num_clothes` size the
    classifiers, which only training uses; `overrides` as ``atzoo train --set``). A tag (or
    ``True`` when the method has one tag or a ``default`` one) downloads the registered weights at
    their pinned revision, checks their sha256 and loads them strictly. A wrong tag is an error
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
    pulled = pull(weights.repo_id, revision=weights.revision, sha256=weights.sha256, filename=weights.filename,
                  cache_dir=cache_dir, registry=registry)
    package = read_package(pulled.path)
    package_method = registry.get("methods", package.config["method"]).qualified_name
    if package_method != method_entry.qualified_name:
        raise PackageError(f"weights {weights.repo_id}@{weights.revision} are for method {package_method}, "
                           f"not {method_entry.qualified_name}")
    return build_package_model(package, registry).to(device)
