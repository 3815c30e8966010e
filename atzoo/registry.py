"""Plugin discovery and the registry of backbones, losses, methods and pretrained weights.

Every plugin (the built-ins included) is loaded on its own with pluggy. Its hooks get a host-built
``register`` callback that validates each item and credits the plugin, its distribution and
version. A plugin that fails to import, whose hook raises or returns its items, or that registers
an invalid item is recorded as failed with every problem at once and contributes nothing; the
others keep working. Once all are loaded, each method's recipe is checked against the registry
(`Registry.method_problems`, the one check of a recipe's validity). In strict mode
(``strict=True`` or ``ATZOO_STRICT=1``) any failure or problem raises `PluginError` instead.

Names: ``builtins`` and ``atzoo`` are reserved for atzoo's own built-ins; a plugin name belongs to
the first distribution providing it, and a second one is refused. Every item is reachable as
``plugin:name``; its short ``name`` works too unless two plugins register it, in which case the
lookup fails naming both qualified names.

This module imports neither torch nor timm: items are only built when their factory is called.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.metadata
import inspect
import math
import os
import re
import time
import traceback
from dataclasses import dataclass, field, replace
from typing import Any
from collections.abc import Callable, Iterable

import pluggy

from atzoo.config import BACKBONE_PREFIX, split_overrides, train_config_problems
from atzoo.errors import AtzooError, PluginError
from atzoo.plugin import (HEAD_TARGETS, LOSS_INPUTS, PROJECT, TASK_FAMILIES, AtzooHookSpecs, Backbone, Loss,
                          LossContext, LossTerm, MethodRecipe, PretrainedWeights)

KINDS = ("backbones", "losses", "methods", "weights")
ITEM_CLASSES: dict[str, type[Any]] = {
    "backbones": Backbone, "losses": Loss, "methods": MethodRecipe, "weights": PretrainedWeights,
}
HOOKS: dict[str, str] = {kind: f"atzoo_register_{kind}" for kind in KINDS}
KIND_NOUNS = {"backbones": "backbone", "losses": "loss", "methods": "method", "weights": "weights"}
BUILTIN_PLUGIN = "builtins"
BUILTIN_MODULE = "atzoo.builtins"
CORE_DISTRIBUTION = "atzoo"
RESERVED_PLUGIN_NAMES = (BUILTIN_PLUGIN, "atzoo")
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]*")
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
STRICT_ENV = "ATZOO_STRICT"
ALLOW_ENV = "ATZOO_PLUGINS"


class InvalidItemError(AtzooError):
    """An item handed to ``register`` breaks the plugin contract."""


@dataclass(frozen=True)
class RegisteredItem:
    """One registered item and who supplied it."""

    kind: str
    name: str
    plugin: str
    distribution: str
    version: str
    item: Any

    @property
    def qualified_name(self) -> str:
        return f"{self.plugin}:{self.name}"


@dataclass(frozen=True)
class PluginInfo:
    """What loading one plugin gave: ``status`` is ``"ok"``, ``"failed"`` or ``"disabled"``
    (not in the allow-list)."""

    name: str
    distribution: str
    version: str
    hooks: tuple[str, ...]
    status: str
    counts: dict[str, int] = field(default_factory=dict)
    error: str = ""
    traceback: str = ""
    """The full traceback of the exception that failed the plugin (``atzoo plugins --verbose``)."""
    problems: tuple[str, ...] = ()
    """Mistakes found once every plugin is loaded (a method naming a missing backbone, say): the items
    stay registered, using them fails with the same message, and strict mode refuses them."""
    import_seconds: float = 0.0
    module: str = ""
    """The module the entry point names (``atzoo_bot.plugin``); empty for an object handed in."""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "distribution": self.distribution, "version": self.version,
                "hooks": list(self.hooks), "status": self.status, "counts": dict(self.counts), "error": self.error,
                "problems": list(self.problems), "import_seconds": round(self.import_seconds, 4),
                "traceback": self.traceback, "module": self.module}


# ---------------------------------------------------------------------------------------------
# validation of registered items


def _check_name(value: Any, what: str) -> None:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise InvalidItemError(f"{what} {value!r} is not a valid name: expected lowercase letters, digits, "
                               f"'_', '.', '-', starting with a letter or digit")


def _check_reference(value: Any, what: str) -> None:
    """A reference to another item: ``name`` or ``plugin:name``."""
    if not isinstance(value, str):
        raise InvalidItemError(f"{what} must be a name (str), got {value!r}")
    plugin, sep, name = value.rpartition(":")
    if sep:
        _check_name(plugin, f"{what}'s plugin")
    _check_name(name, what)


def _check_callable(value: Any, what: str) -> None:
    if not callable(value):
        raise InvalidItemError(f"{what} must be callable, got {value!r}")


def _check_dict(value: Any, what: str) -> None:
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise InvalidItemError(f"{what} must be a dict with str keys, got {value!r}")


def _factory_accepts(factory: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> str:
    """"" when ``factory(*args, **kwargs)`` binds, else why not."""
    try:
        inspect.signature(factory).bind(*args, **kwargs)
    except TypeError as error:
        return str(error)
    except ValueError:
        return ""  # no introspectable signature (a C callable): the call will decide
    return ""


def _validate_backbone(item: Backbone) -> None:
    _check_callable(item.factory, "factory")
    if isinstance(item.embed_dim, bool) or not isinstance(item.embed_dim, int) or item.embed_dim < 1:
        raise InvalidItemError(f"embed_dim must be a positive int, got {item.embed_dim!r}")
    if item.num_outputs not in (1, 6):
        raise InvalidItemError(f"num_outputs must be 1 or 6, got {item.num_outputs!r}")
    _check_dict(item.defaults, "defaults")
    size = item.input_size
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
        raise InvalidItemError(f"input_size must be (height, width) in pixels, got {size!r}")
    norm = item.normalization
    if (not isinstance(norm, (tuple, list)) or len(norm) != 2
            or not all(isinstance(part, (tuple, list)) and len(part) == 3 for part in norm)
            or not all(isinstance(v, (int, float)) for part in norm for v in part)
            or not all(v > 0 for v in norm[1])):
        raise InvalidItemError(f"normalization must be ((mean r, g, b), (std r, g, b)) with positive stds, "
                               f"got {norm!r}")
    problem = _factory_accepts(item.factory, (), dict(item.defaults))
    if problem:
        raise InvalidItemError(f"defaults {sorted(item.defaults)} are not all accepted by its factory: {problem}")


def _validate_loss(item: Loss) -> None:
    _check_callable(item.factory, "factory")
    if not isinstance(item.consumes, (tuple, list)) or not item.consumes:
        raise InvalidItemError(f"consumes must be a non-empty tuple of input names, got {item.consumes!r}")
    unknown = [name for name in item.consumes if name not in LOSS_INPUTS]
    if unknown:
        raise InvalidItemError(f"consumes names unknown input(s) {unknown}; expected some of {list(LOSS_INPUTS)}")
    if len(set(item.consumes)) != len(item.consumes):
        raise InvalidItemError(f"consumes lists an input twice: {item.consumes!r}")
    _check_dict(item.defaults, "defaults")
    if item.sampler not in (None, "pk"):
        raise InvalidItemError(f"sampler must be None or 'pk', got {item.sampler!r}")
    problem = _factory_accepts(item.factory, (None,), dict(item.defaults))
    if problem:
        raise InvalidItemError(f"defaults {sorted(item.defaults)} are not all accepted by its factory "
                               f"factory(context, **defaults): {problem}")


def _validate_term(term: Any, index: int) -> None:
    if not isinstance(term, LossTerm):
        raise InvalidItemError(f"losses[{index}] must be a LossTerm, got {term!r}")
    _check_reference(term.loss, f"losses[{index}].loss")
    if (isinstance(term.weight, bool) or not isinstance(term.weight, (int, float)) or not math.isfinite(term.weight)
            or term.weight < 0):
        raise InvalidItemError(f"losses[{index}].weight must be a finite number >= 0, got {term.weight!r}")
    _check_dict(term.args, f"losses[{index}].args")
    if term.heads != "each" and (
            not isinstance(term.heads, tuple) or not term.heads
            or not all(isinstance(h, int) and not isinstance(h, bool) and h >= 0 for h in term.heads)):
        raise InvalidItemError(f"losses[{index}].heads must be 'each' or a tuple of head indices, got {term.heads!r}")


def _validate_method(item: MethodRecipe) -> None:
    _check_reference(item.backbone, "backbone")
    if not isinstance(item.losses, (tuple, list)) or not item.losses:
        raise InvalidItemError(f"losses must be a non-empty tuple of LossTerm, got {item.losses!r}")
    for index, term in enumerate(item.losses):
        _validate_term(term, index)
    _check_dict(item.backbone_args, "backbone_args")
    if not isinstance(item.heads, (tuple, list)) or len(item.heads) not in (1, 6):
        raise InvalidItemError(f"heads must be a tuple of 1 or 6 targets, got {item.heads!r}")
    wrong = [h for h in item.heads if h not in HEAD_TARGETS]
    if wrong:
        raise InvalidItemError(f"heads {wrong} unknown; each head predicts one of {list(HEAD_TARGETS)}")
    for index, term in enumerate(item.losses):
        if term.heads != "each" and max(term.heads) >= len(item.heads):
            raise InvalidItemError(f"losses[{index}].heads {term.heads} points past the method's "
                                   f"{len(item.heads)} head(s)")
    if item.neck not in ("bnneck", "linear"):
        raise InvalidItemError(f"neck must be 'bnneck' or 'linear', got {item.neck!r}")
    _check_dict(item.train, "train")
    problems = train_config_problems(item.train)
    if problems:
        raise InvalidItemError(f"train: {problems[0]}")
    if item.model_factory is not None:
        _check_callable(item.model_factory, "model_factory")
    if item.train_step is not None:
        _check_callable(item.train_step, "train_step")
    if item.task_family not in ("", *TASK_FAMILIES):
        raise InvalidItemError(f"task_family {item.task_family!r} is not one of {list(TASK_FAMILIES)} "
                               f"(or '' for none)")


def _validate_weights(item: PretrainedWeights) -> None:
    _check_reference(item.method, "method")
    _check_name(item.tag, "tag")
    for attribute in ("repo_id", "revision", "filename"):
        value = getattr(item, attribute)
        if not isinstance(value, str) or not value:
            raise InvalidItemError(f"{attribute} must be a non-empty str, got {value!r}")
    if not isinstance(item.sha256, str) or not SHA256_PATTERN.fullmatch(item.sha256):
        raise InvalidItemError(f"sha256 must be 64 lowercase hex digits, got {item.sha256!r}")
    if not item.filename.endswith(".safetensors"):
        raise InvalidItemError(f"filename must be a .safetensors file, got {item.filename!r}")
    _check_dict(item.metrics, "metrics")


VALIDATORS: dict[str, Callable[[Any], None]] = {
    "backbones": _validate_backbone, "losses": _validate_loss, "methods": _validate_method,
    "weights": _validate_weights,
}


def item_name(kind: str, item: Any) -> str:
    """The registered name of an item. Weights are named ``METHOD.TAG`` after their method's short name."""
    if kind == "weights":
        return f"{item.method.rpartition(':')[2]}.{item.tag}"
    return item.name


def validate_item(kind: str, item: Any) -> str:
    """Check ``item`` against the contract for ``kind``; return its registered name."""
    expected = ITEM_CLASSES[kind]
    if not isinstance(item, expected):
        raise InvalidItemError(f"{HOOKS[kind]} registered {type(item).__name__} {item!r}; "
                               f"expected an atzoo.plugin.{expected.__name__}")
    if kind != "weights":
        _check_name(item.name, f"{KIND_NOUNS[kind]} name")
    if not isinstance(item.description, str):
        raise InvalidItemError(f"description must be a str, got {item.description!r}")
    VALIDATORS[kind](item)
    return item_name(kind, item)


def _label_of(kind: str, item: Any) -> str:
    """``method 'name'`` for messages, as far as the item allows."""
    try:
        return f"{KIND_NOUNS[kind]} {item_name(kind, item)!r}"
    except Exception:  # noqa: BLE001 - the item may be anything a plugin handed in
        return f"an item of {HOOKS[kind]}"


# ---------------------------------------------------------------------------------------------
# loading plugins


def _returning(obj: object) -> Callable[[], object]:
    return lambda: obj


@dataclass
class _Source:
    """A plugin to load: an entry point (loaded lazily) or an object handed in directly."""

    name: str
    distribution: str
    version: str
    load: Callable[[], object]
    module: str = ""
    refusal: str = ""
    """Why this plugin is refused without being imported (a reserved name, say)."""


def _core_version() -> str:
    try:
        return importlib.metadata.version(CORE_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return ""


def _builtin_source() -> _Source:
    return _Source(BUILTIN_PLUGIN, CORE_DISTRIBUTION, _core_version(),
                   lambda: importlib.import_module(BUILTIN_MODULE), BUILTIN_MODULE)


def _entry_point_sources() -> list[_Source]:
    """The built-ins first (always atzoo's own module), then every other entry point by name.

    A reserved name claimed by another distribution is refused, so nobody can hide the built-ins."""
    sources = [_builtin_source()]
    for ep in sorted(importlib.metadata.entry_points(group=PROJECT), key=lambda e: e.name):
        dist = getattr(ep, "dist", None)
        distribution = (dist.metadata["Name"] or "") if dist is not None else ""
        version = (dist.version or "") if dist is not None else ""
        if ep.name in RESERVED_PLUGIN_NAMES:
            if distribution == CORE_DISTRIBUTION and ep.value == BUILTIN_MODULE:
                continue
            sources.append(_Source(ep.name, distribution, version, ep.load, ep.value, refusal=(
                f"plugin name {ep.name!r} is reserved for atzoo's built-ins; distribution "
                f"{distribution or '(unknown)'} may not claim it: rename its entry point")))
            continue
        sources.append(_Source(ep.name, distribution, version, ep.load, ep.value))
    return sources


def _refused(source: _Source, status: str, message: str) -> PluginInfo:
    return PluginInfo(source.name, source.distribution, source.version, (), status,
                      {kind: 0 for kind in KINDS}, message, module=source.module)


def _hook_names(manager: pluggy.PluginManager, module: object) -> tuple[str, ...]:
    return tuple(sorted(caller.name for caller in manager.get_hookcallers(module) or ()))


def _plugin_manager(source: _Source, module: object) -> pluggy.PluginManager:
    """A manager holding this plugin alone; pluggy's own check refuses a hook implementation whose
    name matches no hook (``atzoo_register_backbone`` for ``atzoo_register_backbones``)."""
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(AtzooHookSpecs)
    manager.register(module, name=source.name)
    manager.check_pending()
    return manager


def _run_hooks(source: _Source, manager: pluggy.PluginManager) -> tuple[list[RegisteredItem], list[str]]:
    """Call every hook with a validating ``register``; every problem is collected, none stops the others."""
    entries: list[RegisteredItem] = []
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    for kind in KINDS:
        def register(item: Any, _kind: str = kind) -> None:
            try:
                name = validate_item(_kind, item)
            except InvalidItemError as error:
                problems.append(f"{_label_of(_kind, item)}: {error}")
                return
            if (_kind, name) in seen:
                problems.append(f"registers {KIND_NOUNS[_kind]} {name!r} twice")
                return
            seen.add((_kind, name))
            entries.append(RegisteredItem(_kind, name, source.name, source.distribution, source.version, item))

        returned = [value for value in getattr(manager.hook, HOOKS[kind])(register=register) if value is not None]
        if returned:
            problems.append(f"{HOOKS[kind]} returned {returned[0]!r} instead of calling register(item) for "
                            f"each item; a hook's return value is ignored, so nothing it returned was registered")
    return entries, problems


def _load_plugin(source: _Source) -> tuple[PluginInfo, list[RegisteredItem]]:
    """Import and run one plugin's hooks; on any problem return it as failed with no entries."""
    hooks: tuple[str, ...] = ()
    seconds = 0.0
    try:
        if not NAME_PATTERN.fullmatch(source.name):
            raise InvalidItemError(f"plugin name {source.name!r} is not valid: expected lowercase letters, "
                                   f"digits, '_', '.', '-'")
        started = time.perf_counter()
        module = source.load()
        seconds = time.perf_counter() - started
        manager = _plugin_manager(source, module)
        hooks = _hook_names(manager, module)
        entries, problems = _run_hooks(source, manager)
        if problems:
            raise InvalidItemError("; ".join(problems))
    except Exception as error:  # noqa: BLE001 - a broken plugin must not take the others down
        message = f"{type(error).__name__}: {error}" if not isinstance(error, AtzooError) else str(error)
        trace = "" if isinstance(error, InvalidItemError) else traceback.format_exc()
        return PluginInfo(source.name, source.distribution, source.version, hooks, "failed",
                          {kind: 0 for kind in KINDS}, message, trace, import_seconds=seconds,
                          module=source.module), []
    counts = {kind: sum(entry.kind == kind for entry in entries) for kind in KINDS}
    return PluginInfo(source.name, source.distribution, source.version, hooks, "ok", counts,
                      import_seconds=seconds, module=source.module), entries


def _env_strict() -> bool:
    return os.environ.get(STRICT_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _env_allow() -> list[str] | None:
    raw = os.environ.get(ALLOW_ENV, "").strip()
    return [name.strip() for name in raw.split(",") if name.strip()] if raw else None


class Registry:
    """Everything the loaded plugins registered, looked up by ``plugin:name`` or short name."""

    def __init__(self, plugins: list[PluginInfo], entries: Iterable[RegisteredItem]) -> None:
        self.plugins = list(plugins)
        self._entries: dict[str, list[RegisteredItem]] = {kind: [] for kind in KINDS}
        for entry in entries:
            self._entries[entry.kind].append(entry)
        for kind in KINDS:
            self._entries[kind].sort(key=lambda e: (e.name, e.plugin))

    @staticmethod
    def _check_kind(kind: str) -> None:
        if kind not in KINDS:
            raise AtzooError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")

    def entries(self, kind: str) -> list[RegisteredItem]:
        self._check_kind(kind)
        return list(self._entries[kind])

    def _display_names(self, kind: str) -> list[tuple[str, RegisteredItem]]:
        counts: dict[str, int] = {}
        for entry in self._entries[kind]:
            counts[entry.name] = counts.get(entry.name, 0) + 1
        return [(entry.name if counts[entry.name] == 1 else entry.qualified_name, entry)
                for entry in self._entries[kind]]

    def names(self, kind: str, pattern: str | None = None) -> list[str]:
        """Sorted names, short where unambiguous; ``pattern`` is a shell wildcard (``"resnet*"``)
        matched against the short and the qualified name."""
        self._check_kind(kind)
        shown = self._display_names(kind)
        if pattern:
            pattern = pattern.lower()
            shown = [(name, entry) for name, entry in shown
                     if fnmatch.fnmatchcase(entry.name, pattern) or fnmatch.fnmatchcase(entry.qualified_name, pattern)]
        return sorted(name for name, _ in shown)

    def failed(self) -> list[PluginInfo]:
        return [info for info in self.plugins if info.status == "failed"]

    def get(self, kind: str, name: str) -> RegisteredItem:
        """The entry registered as ``name`` (``plugin:name`` or a short name) under ``kind``."""
        self._check_kind(kind)
        if not isinstance(name, str) or not name:
            raise AtzooError(f"expected a {KIND_NOUNS[kind]} name, got {name!r}")
        plugin, sep, short = name.rpartition(":")
        if sep:
            matches = [e for e in self._entries[kind] if e.plugin == plugin and e.name == short]
            if not matches:
                self._raise_unknown_plugin(plugin)
        else:
            matches = [e for e in self._entries[kind] if e.name == short]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            providers = " and ".join(e.qualified_name for e in matches)
            raise AtzooError(f"{KIND_NOUNS[kind]} name {name!r} is ambiguous: registered as {providers}; "
                             f"use the qualified name")
        self._raise_unknown(kind, name)
        raise AssertionError("unreachable")

    def _raise_unknown_plugin(self, plugin: str) -> None:
        info = next((p for p in self.plugins if p.name == plugin), None)
        if info is not None and info.status == "failed":
            raise AtzooError(f"plugin {plugin!r} ({info.distribution or 'no distribution'}) failed to load: "
                             f"{info.error}")
        if info is not None and info.status == "disabled":
            raise AtzooError(f"plugin {plugin!r} is installed but not in {ALLOW_ENV}; add it to load it")

    def _raise_unknown(self, kind: str, name: str) -> None:
        candidates = [shown for shown, _ in self._display_names(kind)]
        candidates += [e.qualified_name for e in self._entries[kind]]
        close = difflib.get_close_matches(name, sorted(set(candidates)), n=3, cutoff=0.6)
        message = f"unknown {KIND_NOUNS[kind]} {name!r}"
        if close:
            message += f"; did you mean {' or '.join(repr(c) for c in close)}?"
        message += f" (see `atzoo list {kind}`)"
        failed = self.failed()
        if failed:
            message += (f"; plugin(s) {', '.join(p.name for p in failed)} failed to load "
                        f"(see `atzoo plugins`)")
        raise AtzooError(message)

    def method_problems(self, name: str | RegisteredItem, overrides: dict[str, Any] | None = None) -> list[str]:
        """Everything wrong with training method ``name`` under ``overrides`` (``--set`` keys, with
        ``backbone.X`` for the backbone's factory), each naming the method and the field; ``[]`` when
        the recipe is valid. This is the one check `train`, the runner service and `describe` use."""
        entry = name if isinstance(name, RegisteredItem) else self.get("methods", name)
        method, label = entry.item, f"method {entry.qualified_name}"
        backbone_overrides, train_overrides = split_overrides(dict(overrides or {}))
        problems: list[str] = []
        backbone = self._reference_problem("backbones", method.backbone, f"{label}: backbone", problems)
        losses = [self._reference_problem("losses", term.loss, f"{label}: losses[{index}].loss", problems)
                  for index, term in enumerate(method.losses)]
        problems += [f"{label}: train: {problem}" for problem in train_config_problems(method.train, train_overrides)]
        if backbone is not None:
            problems += self._backbone_problems(label, backbone, method, backbone_overrides)
        for index, (term, loss) in enumerate(zip(method.losses, losses)):
            if loss is not None:
                problems += self._loss_problems(f"{label}: losses[{index}] ({loss.qualified_name})", loss, term,
                                                {**method.train, **train_overrides})
        problems += self._loss_optimizer_problems(label, method, losses, {**method.train, **train_overrides})
        return problems

    def check_method(self, name: str, overrides: dict[str, Any] | None = None) -> RegisteredItem:
        """The method's entry, or an `AtzooError` listing every problem `method_problems` finds."""
        entry = self.get("methods", name)
        problems = self.method_problems(entry, overrides)
        if problems:
            raise AtzooError(f"the recipe of method {entry.qualified_name} is not valid: " + "; ".join(problems))
        return entry

    def _reference_problem(self, kind: str, reference: str, label: str, problems: list[str]) -> RegisteredItem | None:
        try:
            return self.get(kind, reference)
        except AtzooError as error:
            problems.append(f"{label}: {error}")
            return None

    @staticmethod
    def _backbone_problems(label: str, backbone: RegisteredItem, method: MethodRecipe, overrides: dict[str, Any]) -> list[str]:
        problems = []
        if len(method.heads) != backbone.item.num_outputs:
            problems.append(f"{label}: heads: {len(method.heads)} head(s) but backbone {backbone.qualified_name} has "
                            f"{backbone.item.num_outputs} output(s)")
        args = {**backbone.item.defaults, **method.backbone_args, **overrides}
        problem = _factory_accepts(backbone.item.factory, (), args)
        if problem:
            given = sorted({*method.backbone_args, *(BACKBONE_PREFIX + key for key in overrides)})
            problems.append(f"{label}: backbone_args {given}: not accepted by backbone {backbone.qualified_name}'s "
                            f"factory: {problem}")
        return problems

    @staticmethod
    def _loss_problems(label: str, loss: RegisteredItem, term: LossTerm, train: dict[str, Any]) -> list[str]:
        problems = []
        problem = _factory_accepts(loss.item.factory, (None,), {**loss.item.defaults, **term.args})
        if problem:
            problems.append(f"{label}: args {sorted(term.args)}: not accepted by its factory: {problem}")
        instances = train.get("num_instances", 4)
        if loss.item.sampler == "pk" and isinstance(instances, int) and instances < 2:
            problems.append(f"{label}: needs P x K batches with K >= 2, but num_instances is {instances}")
        return problems

    def _loss_optimizer_problems(self, label: str, method: MethodRecipe, losses: list[RegisteredItem | None],
                                 train: dict[str, Any]) -> list[str]:
        chosen = train.get("loss_optimizers")
        if not isinstance(chosen, dict):
            return []
        known = [entry for entry in losses if entry is not None]
        problems = []
        for key in chosen:
            matches = {e.qualified_name for e in known if key in (e.name, e.qualified_name)}
            if len(matches) != 1:
                problems.append(f"{label}: train: loss_optimizers key {key!r} must name exactly one of the method's "
                                f"losses {[e.qualified_name for e in known]}")
        return problems

    def weights_for(self, method: str) -> list[RegisteredItem]:
        """Published weights of ``method`` (any name that resolves to it)."""
        target = self.get("methods", method).qualified_name
        found = []
        for entry in self._entries["weights"]:
            try:
                if self.get("methods", entry.item.method).qualified_name == target:
                    found.append(entry)
            except AtzooError:
                continue
        return found


_CACHE: dict[tuple, Registry] = {}


def _with_reference_problems(plugins: list[PluginInfo], entries: list[RegisteredItem]) -> list[PluginInfo]:
    """Each plugin's methods checked against everything loaded (their backbones and losses exist and are
    unambiguous, arguments and settings are accepted), recorded on the plugin."""
    registry = Registry(plugins, entries)
    found: dict[str, list[str]] = {}
    for entry in registry.entries("methods"):
        found.setdefault(entry.plugin, []).extend(registry.method_problems(entry))
    return [replace(info, problems=tuple(found.get(info.name, ()))) for info in plugins]


def _raise_if_not_clean(registry: Registry) -> None:
    details = [f"{p.name} ({p.distribution or 'no distribution'}): {p.error}" for p in registry.failed()]
    details += [f"{p.name} ({p.distribution or 'no distribution'}): {problem}"
                for p in registry.plugins for problem in p.problems]
    if details:
        raise PluginError(f"{len(details)} plugin problem(s) (strict mode): " + "; ".join(details))


def load_registry(*, strict: bool | None = None, allow: list[str] | None = None,
                  extra_plugins: dict[str, object] | None = None, refresh: bool = False) -> Registry:
    """Discover and load the installed plugins (cached: the same arguments give the same object).

    - ``strict`` (default: env ``ATZOO_STRICT=1``): any failed plugin, or any problem found once all
      are loaded (a method naming a missing or ambiguous backbone, say), raises `PluginError`.
    - ``allow`` (default: env ``ATZOO_PLUGINS=a,b``): load only these plugins; the built-ins are
      always loaded. Plugins left out are listed with status ``"disabled"``.
    - ``extra_plugins``: plugin name -> module or object with hookimpls, loaded after the installed
      ones with distribution and version ``""`` (for tests and notebooks).
    """
    strict = _env_strict() if strict is None else bool(strict)
    allow = _env_allow() if allow is None else list(allow)
    extras = dict(extra_plugins or {})
    key = (strict, tuple(allow) if allow is not None else None, tuple((name, id(obj)) for name, obj in extras.items()))
    if not refresh and key in _CACHE:
        return _CACHE[key]

    sources = _entry_point_sources()
    sources += [_Source(name, "", "", _returning(obj)) for name, obj in extras.items()]
    plugins: list[PluginInfo] = []
    entries: list[RegisteredItem] = []
    owners: dict[str, str] = {}
    for source in sources:
        if source.refusal:
            plugins.append(_refused(source, "failed", source.refusal))
        elif source.name in owners:
            plugins.append(_refused(source, "failed", (
                f"plugin name {source.name!r} is already owned by distribution {owners[source.name] or '(none)'}; "
                f"distribution {source.distribution or '(none)'} may not provide a second plugin of that name: "
                f"rename its entry point")))
        elif allow is not None and source.name != BUILTIN_PLUGIN and source.name not in allow:
            owners[source.name] = source.distribution
            plugins.append(_refused(source, "disabled", f"not in {ALLOW_ENV}"))
        else:
            owners[source.name] = source.distribution
            info, found = _load_plugin(source)
            plugins.append(info)
            entries.extend(found)
    registry = Registry(_with_reference_problems(plugins, entries), entries)
    if strict:
        _raise_if_not_clean(registry)
    _CACHE[key] = registry
    return registry


# ---------------------------------------------------------------------------------------------
# the public Python API (re-exported lazily by `atzoo`)


def list_backbones(pattern: str | None = None) -> list[str]:
    """Registered backbone names, like ``timm.list_models``: ``atzoo.list_backbones("resnet*")``."""
    return load_registry().names("backbones", pattern)


def list_losses(pattern: str | None = None) -> list[str]:
    return load_registry().names("losses", pattern)


def list_methods(pattern: str | None = None) -> list[str]:
    return load_registry().names("methods", pattern)


def _call_factory(entry: RegisteredItem, factory: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> Any:
    """Call a factory after checking that it accepts ``kwargs`` (a clear error, not a TypeError)."""
    try:
        inspect.signature(factory).bind(*args, **kwargs)
    except TypeError as error:
        raise AtzooError(f"{KIND_NOUNS[entry.kind]} {entry.qualified_name} does not accept the arguments "
                         f"{sorted(kwargs)}: {error}") from None
    except ValueError:
        pass  # no introspectable signature (a C callable): let the call decide
    return factory(*args, **kwargs)


def create_backbone(name: str, **kwargs: Any) -> Any:
    """Build a registered backbone (a ``torch.nn.Module``) from its defaults updated by ``kwargs``."""
    entry = load_registry().get("backbones", name)
    return _call_factory(entry, entry.item.factory, (), {**entry.item.defaults, **kwargs})


def create_loss(name: str, context: LossContext, **kwargs: Any) -> Any:
    """Build a registered loss module for ``context`` from its defaults updated by ``kwargs``."""
    entry = load_registry().get("losses", name)
    return _call_factory(entry, entry.item.factory, (context,), {**entry.item.defaults, **kwargs})


def get_method(name: str) -> MethodRecipe:
    """The registered method (recipe) ``name``."""
    return load_registry().get("methods", name).item
