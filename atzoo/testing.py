"""Conformance checks for plugin authors: call them from your own pytest.

    from atzoo.testing import check_plugin

    def test_my_plugin_conforms():
        check_plugin("myplugin", image_size=(64, 32))

Each check builds the item the way the host does, runs it on a tiny random batch and raises
``AssertionError`` with a message naming the item and what is wrong. They run on CPU in seconds
for small models; pass ``image_size`` to keep large backbones fast.
"""

from __future__ import annotations

import inspect
import math
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atzoo.errors import AtzooError
from atzoo.plugin import LossContext
from atzoo.registry import RegisteredItem, Registry, load_registry

if TYPE_CHECKING:
    import torch


KIND_CHECKS = ("backbones", "losses", "methods")


def _entry(kind: str, name_or_entry: str | RegisteredItem, registry: Registry | None) -> RegisteredItem:
    if isinstance(name_or_entry, RegisteredItem):
        assert name_or_entry.kind == kind, f"{name_or_entry.qualified_name} is a {name_or_entry.kind} entry, not {kind}"
        return name_or_entry
    registry = registry or load_registry()
    try:
        return registry.get(kind, name_or_entry)
    except AtzooError as error:
        raise AssertionError(str(error)) from None


def _expected_shape(batch: int, num_outputs: int, dim: int) -> tuple[int, ...]:
    return (batch, dim) if num_outputs == 1 else (batch, num_outputs, dim)


def _forward(module: torch.nn.Module, images: torch.Tensor, label: str) -> torch.Tensor:
    import torch

    output = module(images)
    assert isinstance(output, torch.Tensor), f"{label} returned {type(output).__name__}; expected a tensor"
    return output


def check_backbone(name_or_entry: str | RegisteredItem, *, batch_size: int = 2, image_size: tuple[int, int] | None = None,
                   registry: Registry | None = None, **kwargs: Any) -> dict[str, Any]:
    """Build a backbone (defaults updated by ``kwargs``) and check the contract of `atzoo.plugin.Backbone`:
    output shape (B, D) or (B, 6, D) with D == embed_dim in train and eval mode, finite values,
    gradients reaching its parameters, deterministic eval outputs and a safetensors round trip
    into a freshly built instance giving identical outputs. Returns a short summary."""
    import torch
    from safetensors.torch import load_model, save_model

    entry = _entry("backbones", name_or_entry, registry)
    item = entry.item
    label = f"backbone {entry.qualified_name}"
    args = {**item.defaults, **kwargs}
    torch.manual_seed(0)
    module = item.factory(**args)
    assert isinstance(module, torch.nn.Module), f"{label}: factory returned {type(module).__name__}, not a torch.nn.Module"
    dim = int(getattr(module, "embed_dim", item.embed_dim))
    if not kwargs:
        assert dim == item.embed_dim, (f"{label}: built from its defaults it has embed_dim {dim}, "
                                       f"but it is registered with embed_dim {item.embed_dim}")
    height, width = image_size or item.input_size
    assert batch_size >= 2, "batch_size must be at least 2 (BatchNorm in train mode)"
    images = torch.randn(batch_size, 3, height, width)
    expected = _expected_shape(batch_size, item.num_outputs, dim)

    module.train()
    output = _forward(module, images, label)
    assert tuple(output.shape) == expected, f"{label}: train-mode output {tuple(output.shape)}; expected {expected}"
    assert torch.isfinite(output).all(), f"{label}: train-mode output has non-finite values"
    output.float().pow(2).mean().backward()
    trainable = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    assert trainable, f"{label}: has no trainable parameters"
    reached = [n for n, p in trainable if p.grad is not None and p.grad.abs().sum() > 0]
    assert reached, f"{label}: no gradient reaches any parameter"
    bad = [n for n, p in trainable if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"{label}: non-finite gradients in {bad[:5]}"

    module.eval()
    with torch.no_grad():
        first = _forward(module, images, label)
        second = _forward(module, images, label)
    assert tuple(first.shape) == expected, f"{label}: eval-mode output {tuple(first.shape)}; expected {expected}"
    assert torch.isfinite(first).all(), f"{label}: eval-mode output has non-finite values"
    assert torch.allclose(first, second), f"{label}: eval mode is not deterministic"

    torch.manual_seed(1)
    fresh = item.factory(**args).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "backbone.safetensors"
        save_model(module, str(path))
        missing, unexpected = load_model(fresh, str(path), strict=True)
    with torch.no_grad():
        reloaded = _forward(fresh, images, label)
    assert torch.allclose(first, reloaded, atol=1e-6, rtol=1e-5), \
        f"{label}: outputs differ after a safetensors round trip of its state dict into a fresh instance"
    return {"name": entry.qualified_name, "embed_dim": dim, "output_shape": expected,
            "parameters": sum(p.numel() for p in module.parameters())}


def _loss_inputs(context: LossContext, batch_size: int) -> dict[str, Any]:
    """Random inputs for every name in LOSS_INPUTS, with P x K structure (2 images per person)."""
    import torch

    heads, dim = context.num_heads, context.embed_dim
    person = torch.arange(batch_size) // 2 % context.num_persons
    clothes_to_person = torch.arange(context.num_clothes) % context.num_persons
    clothes = torch.stack([torch.nonzero(clothes_to_person == p)[0, 0] for p in person.tolist()])
    all_features = torch.randn(batch_size, heads, dim, requires_grad=True)
    all_embeddings = torch.randn(batch_size, heads, dim, requires_grad=True)
    classes = [context.num_clothes if head == "clothes" else context.num_persons
               for head in (context.heads or ("person",) * heads)]
    all_logits = [torch.randn(batch_size, width, requires_grad=True) for width in classes]
    return {
        "features": all_features[:, 0], "embeddings": all_embeddings[:, 0], "logits": all_logits[0],
        "target": person, "head": 0, "person": person, "clothes": clothes,
        "modality": torch.arange(batch_size) % 2 + 1, "camera": torch.arange(batch_size) % 16 + 1,
        "all_features": all_features, "all_embeddings": all_embeddings, "all_logits": all_logits,
        "clothes_to_person": clothes_to_person,
        "_leaves": [all_features, all_embeddings, *all_logits],
    }


def check_loss(name_or_entry: str | RegisteredItem, *, context: LossContext | None = None, batch_size: int = 8,
               registry: Registry | None = None, **kwargs: Any) -> dict[str, Any]:
    """Build a loss for ``context`` (a small default one) and check it: a ``torch.nn.Module`` whose
    forward takes exactly its ``consumes`` as keyword arguments and returns a finite scalar that
    back-propagates (finite gradients) to its inputs and parameters."""
    import torch

    entry = _entry("losses", name_or_entry, registry)
    item = entry.item
    label = f"loss {entry.qualified_name}"
    context = context or LossContext(num_persons=4, num_clothes=6, embed_dim=16, num_heads=2)
    torch.manual_seed(0)
    module = item.factory(context, **{**item.defaults, **kwargs})
    assert isinstance(module, torch.nn.Module), f"{label}: factory returned {type(module).__name__}, not a torch.nn.Module"
    signature = inspect.signature(module.forward)
    inputs = _loss_inputs(context, batch_size)
    consumed = {name: inputs[name] for name in item.consumes}
    try:
        signature.bind(**consumed)
    except TypeError as error:
        raise AssertionError(f"{label}: forward does not take exactly {list(item.consumes)}: {error}") from None
    value = module(**consumed)
    assert isinstance(value, torch.Tensor) and value.ndim == 0, \
        f"{label}: returned {getattr(value, 'shape', type(value).__name__)}; expected a scalar tensor"
    assert torch.isfinite(value), f"{label}: returned {float(value)}"
    assert value.requires_grad, f"{label}: its value does not depend on its inputs or parameters"
    value.backward()
    grads = [leaf.grad for leaf in inputs["_leaves"] if leaf.grad is not None]
    grads += [p.grad for p in module.parameters() if p.grad is not None]
    assert all(torch.isfinite(g).all() for g in grads), f"{label}: non-finite gradients"
    return {"name": entry.qualified_name, "value": float(value.detach())}


def check_method(name_or_entry: str | RegisteredItem, *, registry: Registry | None = None, build: bool = False,
                 overrides: dict[str, Any] | None = None, image_size: tuple[int, int] = (64, 32),
                 batch_size: int = 4) -> dict[str, Any]:
    """Check a method's recipe with the runner's own check (`Registry.method_problems`: backbone and
    losses resolve, one head per backbone output, the training settings and every factory argument
    are accepted, P x K batches where a loss needs them).
    ``build=True`` also builds the model the runner's way and runs one training step on random
    images of ``image_size`` (``overrides``: as ``--set``, e.g. ``{"backbone.pretrained": False}``)."""
    registry = registry or load_registry()
    entry = _entry("methods", name_or_entry, registry)
    method = entry.item
    problems = registry.method_problems(entry)
    assert not problems, "; ".join(problems)
    summary: dict[str, Any] = {"name": entry.qualified_name, "heads": list(method.heads),
                               "losses": [t.loss for t in method.losses]}
    if build:
        summary["loss"] = _train_step(entry.qualified_name, registry, overrides or {}, image_size, batch_size)
    return summary


def _train_step(method: str, registry: Registry, overrides: dict[str, Any], image_size: tuple[int, int],
                batch_size: int) -> float:
    import torch

    from atzoo.runner.objective import Objective
    from atzoo.runner.recipe import build_model, loss_context, resolve_recipe

    num_persons, num_clothes = 4, 6
    recipe = resolve_recipe(method, {**overrides, "image_size": list(image_size)}, registry)
    torch.manual_seed(0)
    model = build_model(recipe, num_persons, num_clothes, registry).train()
    objective = Objective(list(recipe.losses), registry, loss_context(recipe, model, num_persons, num_clothes),
                          recipe.heads)
    person = torch.arange(batch_size) // 2 % num_persons
    batch = {"person": person, "clothes": person, "modality": torch.ones_like(person),
             "camera": torch.ones_like(person)}
    outputs = model(torch.randn(batch_size, 3, *image_size))
    total, _ = objective(outputs, batch, torch.arange(num_clothes) % num_persons)
    value = float(total.detach())
    assert math.isfinite(value), f"method {method}: the first training loss is {value}"
    total.backward()
    model.eval()
    with torch.no_grad():
        embeddings = model(torch.randn(batch_size, 3, *image_size))
    dim = int(getattr(model, "embed_dim", recipe.embed_dim))
    expected = _expected_shape(batch_size, len(recipe.heads), dim)
    assert tuple(embeddings.shape) == expected, \
        f"method {method}: eval embeddings {tuple(embeddings.shape)}; expected {expected}"
    return value


def _context_of_a_method_using(loss: RegisteredItem, registry: Registry) -> LossContext | None:
    """The heads of the first registered method that uses ``loss``, so that a loss made for a
    particular head layout (six scenario heads, say) is checked on that layout."""
    for method in registry.entries("methods"):
        if any(registry.get("losses", term.loss).qualified_name == loss.qualified_name
               for term in method.item.losses):
            heads = tuple(method.item.heads)
            return LossContext(num_persons=4, num_clothes=6, embed_dim=16, num_heads=len(heads), heads=heads)
    return None


SLOW_IMPORT_S = 0.2
"""Importing a plugin's module above this many seconds is reported: every `atzoo` command pays it."""


@dataclass(frozen=True)
class ImportCost:
    """How long importing a plugin's module takes in a fresh interpreter, after atzoo itself."""

    seconds: float
    heaviest: str
    heaviest_seconds: float


def measure_import(module: str) -> ImportCost:
    """Import ``module`` in a fresh Python (``-X importtime``) once atzoo's registry is loaded, and
    report the time and the heaviest module it pulled in (``torch``, say)."""
    script = ("import sys, atzoo.registry\nsys.stderr.write('ATZOO-IMPORT-START\\n'); sys.stderr.flush()\n"
              f"__import__({module!r})")
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", script], capture_output=True, text=True,
                          timeout=600, check=False)
    if done.returncode != 0:
        raise AssertionError(f"importing {module} in a fresh interpreter failed: {done.stderr.strip()[-2000:]}")
    lines = done.stderr.split("ATZOO-IMPORT-START", 1)[-1].splitlines()
    own = module.split(".", 1)[0]
    total, heaviest, heaviest_us = 0, "", 0
    for line in lines:
        parts = line.split("|")
        if not line.startswith("import time:") or len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        cumulative, name = int(parts[1]), parts[2]
        if len(name) - len(name.lstrip()) == 1:
            total += cumulative
        package = name.strip().split(".", 1)[0]
        if package not in (own, "atzoo") and cumulative > heaviest_us:
            heaviest, heaviest_us = name.strip(), cumulative
    return ImportCost(total / 1e6, heaviest, heaviest_us / 1e6)


def _collect(problems: list[str], check: Any, *args: Any, **kwargs: Any) -> Any:
    """Run one check; an assertion or any exception becomes a problem, so every check runs."""
    try:
        return check(*args, **kwargs)
    except AssertionError as error:
        problems.append(str(error))
    except Exception as error:  # noqa: BLE001 - a plugin's code may raise anything
        problems.append(f"{type(error).__name__}: {error}")
    return None


def plugin_report(plugin_name: str, *, registry: Registry | None = None, image_size: tuple[int, int] | None = None,
                  backbone_kwargs: dict[str, dict[str, Any]] | None = None, build_methods: bool = False,
                  method_overrides: dict[str, Any] | None = None, measure_imports: bool = True) -> dict[str, Any]:
    """Every check on everything ``plugin_name`` registered, with every problem collected (not just
    the first). The plugin is loaded alone with the built-ins (unless ``registry`` is given), so
    other installed plugins cannot make it fail. Returns the items' summaries, ``problems``,
    ``warnings`` and ``import_seconds``."""
    registry = registry or load_registry(allow=[plugin_name], strict=False)
    report: dict[str, Any] = {"plugin": plugin_name, "backbones": [], "losses": [], "methods": [],
                              "problems": [], "warnings": [], "import_seconds": None}
    problems: list[str] = report["problems"]
    info = next((p for p in registry.plugins if p.name == plugin_name), None)
    if info is None:
        problems.append(f"plugin {plugin_name!r} is not installed (installed: {[p.name for p in registry.plugins]})")
        return report
    if info.status != "ok":
        problems += [f"plugin {plugin_name!r} did not load ({info.status}): {part}" for part in info.error.split("; ")]
    problems += list(info.problems)
    if measure_imports and info.module:
        cost = _collect(problems, measure_import, info.module)
        if cost is not None:
            report["import_seconds"] = round(cost.seconds, 4)
            if cost.seconds > SLOW_IMPORT_S:
                report["warnings"].append(
                    f"importing {info.module} takes {cost.seconds:.2f} s (more than {SLOW_IMPORT_S} s), mostly "
                    f"{cost.heaviest or 'its own code'} ({cost.heaviest_seconds:.2f} s): every atzoo command pays "
                    f"this; import heavy modules inside the factories")
    if info.status != "ok":
        return report
    mine = {kind: [e for e in registry.entries(kind) if e.plugin == plugin_name] for kind in KIND_CHECKS}
    for entry in mine["backbones"]:
        kwargs = (backbone_kwargs or {}).get(entry.name, {})
        summary = _collect(problems, check_backbone, entry, image_size=image_size, registry=registry, **kwargs)
        report["backbones"] += [summary] if summary else []
    for entry in mine["losses"]:
        summary = _collect(problems, check_loss, entry, context=_context_of_a_method_using(entry, registry),
                           registry=registry)
        report["losses"] += [summary] if summary else []
    for entry in mine["methods"]:
        if registry.method_problems(entry):
            continue  # already listed among the plugin's problems
        summary = _collect(problems, check_method, entry, registry=registry, build=build_methods,
                           overrides=method_overrides, image_size=image_size or (64, 32))
        report["methods"] += [summary] if summary else []
    return report


def check_plugin(plugin_name: str, *, registry: Registry | None = None, image_size: tuple[int, int] | None = None,
                 backbone_kwargs: dict[str, dict[str, Any]] | None = None, build_methods: bool = False,
                 method_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run every check on everything ``plugin_name`` registered, loaded alone with the built-ins, and
    raise one ``AssertionError`` listing every problem found. Returns `plugin_report`'s report
    (its ``warnings`` include a slow import).

    ``backbone_kwargs`` maps a backbone's short name to factory arguments for its check;
    ``build_methods`` runs one training step per method (see `check_method`)."""
    report = plugin_report(plugin_name, registry=registry, image_size=image_size, backbone_kwargs=backbone_kwargs,
                           build_methods=build_methods, method_overrides=method_overrides)
    if report["problems"]:
        listed = "\n".join(f"  - {problem}" for problem in report["problems"])
        raise AssertionError(f"plugin {plugin_name!r}: {len(report['problems'])} problem(s):\n{listed}")
    return report
