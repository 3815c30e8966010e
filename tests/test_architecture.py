"""The layers of docs/architecture.md, enforced: every import between atzoo modules (at module level
or inside a function) goes to the same layer or below, never in a cycle, and the library never
imports the command line."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "atzoo"

# Bottom to top. A module belongs to the layer of its longest matching prefix.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("formats and protocol facts", ("atzoo.errors", "atzoo.protocol", "atzoo.formats", "atzoo.io", "atzoo.config",
                                    "atzoo.outputs", "atzoo.weights_bytes")),
    ("data and evaluation", ("atzoo.data", "atzoo.evaluation")),
    ("plugin contract and registry", ("atzoo.plugin", "atzoo.registry", "atzoo.builtins", "atzoo.backbones",
                                      "atzoo.losses", "atzoo.model")),
    ("runner", ("atzoo.runner", "atzoo.testing")),
    ("packages and hub", ("atzoo.package", "atzoo.uploadguard", "atzoo.hub", "atzoo.zoo", "atzoo.embed")),
    ("leaderboard", ("atzoo.leaderboard",)),
    ("runner service", ("atzoo.service",)),
    ("app", ("atzoo.app",)),
    ("command line", ("atzoo.cli", "atzoo.__main__")),
)
FACADE = "atzoo"
"""`atzoo/__init__.py`: the lazy public API, above every layer; nothing inside atzoo imports it."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def resolve(name: str) -> str | None:
    """The atzoo module `name` refers to (a module, or the package holding the name), or None."""
    known = modules()
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imported_modules(module: str) -> set[str]:
    """Every atzoo module `module` imports, anywhere in its code (functions included)."""
    path = modules()[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name == FACADE or name.startswith(FACADE + "."):
                target = resolve(name)
                if target is not None and target != module:
                    found.add(target)
    return found


@cache
def graph() -> dict[str, frozenset[str]]:
    return {module: frozenset(imported_modules(module)) for module in modules()}


def layer_of(module: str) -> int:
    best, best_length = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    return best


def cycles(edges: dict[str, frozenset[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_every_module_has_a_layer():
    unplaced = [module for module in modules() if module != FACADE and layer_of(module) < 0]
    assert not unplaced, f"add these modules to a layer in LAYERS (and docs/architecture.md): {unplaced}"


def test_no_import_cycle_between_atzoo_modules():
    found = cycles(graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(cycle) for cycle in found)


def test_the_library_never_imports_the_command_line():
    offenders = sorted(f"{module} imports {target}" for module, targets in graph().items()
                       if layer_of(module) != layer_of("atzoo.cli") for target in targets
                       if target == "atzoo.cli" or target.startswith("atzoo.cli."))
    assert not offenders, "\n".join(offenders)


def test_no_module_imports_from_a_higher_layer():
    offenders = []
    for module, targets in graph().items():
        if module == FACADE or layer_of(module) < 0:
            continue  # reported by test_every_module_has_a_layer
        for target in sorted(targets):
            if target == FACADE:
                offenders.append(f"{module} imports the facade {FACADE} (import the module itself)")
            elif layer_of(target) > layer_of(module):
                offenders.append(f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} "
                                 f"({LAYERS[layer_of(target)][0]})")
    assert not offenders, "\n".join(offenders)


# ---------------------------------------------------------------------------------------------
# the walker itself


def test_the_walker_sees_imports_inside_functions_and_relative_ones(tmp_path, monkeypatch):
    package = tmp_path / "atzoo"
    (package / "low").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "low" / "__init__.py").write_text("from .part import thing\n")
    (package / "low" / "part.py").write_text("def f():\n    from atzoo.high import g\n    return g\n")
    (package / "high.py").write_text("import atzoo.low.part as p\n\ndef g():\n    return p\n")
    monkeypatch.setitem(globals(), "PACKAGE", package)
    modules.cache_clear()
    graph.cache_clear()
    try:
        assert imported_modules("atzoo.low") == {"atzoo.low.part"}
        assert imported_modules("atzoo.low.part") == {"atzoo.high"}
        assert cycles(graph()) == [["atzoo.high", "atzoo.low.part"]]
    finally:
        modules.cache_clear()
        graph.cache_clear()


@pytest.mark.parametrize("module, layer", [("atzoo.formats.model", 0), ("atzoo.data.layout", 1),
                                           ("atzoo.runner.trainer", 3), ("atzoo.cli.main", 8)])
def test_layers_by_longest_prefix(module, layer):
    assert layer_of(module) == layer


# ---------------------------------------------------------------------------------------------
# one of each


PROTOCOL_FACTS = ("TEST_FLAGS", "SCENARIO_FLAGS", "QUERY_FLAGS", "GALLERY_FLAGS", "GALLERY_SET_FLAGS", "TRAIN_FLAG", "VAL_FLAG")


def assigned_names(module: str) -> set[str]:
    tree = ast.parse(modules()[module].read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        names.update(target.id for target in targets if isinstance(target, ast.Name))
    return names


def test_protocol_facts_are_defined_once_in_the_protocol():
    redefined = sorted(f"{module} defines {name}" for module in modules() if module != "atzoo.protocol"
                       for name in assigned_names(module) & set(PROTOCOL_FACTS))
    assert not redefined, "import them from atzoo.protocol:\n" + "\n".join(redefined)


def test_one_class_per_name_across_the_library():
    classes: dict[str, list[str]] = {}
    for module, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                classes.setdefault(node.name, []).append(module)
    shared = {name: owners for name, owners in classes.items() if len(owners) > 1}
    assert not shared, f"two classes with one name (rename one after its concept): {shared}"
