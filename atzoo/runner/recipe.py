"""A method's recipe resolved against the registry and the user's overrides, recipe files, and
what a recipe builds.

The resolved recipe (`atzoo.formats.recipe.ResolvedRecipe`) is what a run directory's `config.json`
stores: with it (and the plugins it names) the model can be rebuilt anywhere. `resolve_recipe` is
the one place that decides whether a recipe is valid (through `Registry.check_method`): `atzoo
train`, the runner service's pre-submit check and `atzoo describe` all call it, before anything is
read or written.

This module imports torch only when a model is built, so describing a recipe stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from atzoo.config import BACKBONE_PREFIX, build_train_config, split_overrides
from atzoo.errors import AtzooError
from atzoo.formats.jsonfile import parse_json
from atzoo.formats.model import validate_data
from atzoo.formats.recipe import Provider, ResolvedRecipe
from atzoo.plugin import LossContext

if TYPE_CHECKING:
    from torch import nn

    from atzoo.registry import Registry

RECIPE_FILE_KEYS = ("method", "backbone", "train")


def resolve_recipe(method_name: str, overrides: dict[str, Any], registry: Registry) -> ResolvedRecipe:
    """The method's recipe with ``overrides`` applied, or an `AtzooError` listing every problem
    (unknown or ambiguous backbone and losses, unknown settings, values out of range, arguments a
    factory does not take). Nothing is read, built or written."""
    method_entry = registry.check_method(method_name, overrides)
    method = method_entry.item
    backbone_entry = registry.get("backbones", method.backbone)
    backbone = backbone_entry.item
    backbone_overrides, train_overrides = split_overrides(overrides)
    losses = []
    for term in method.losses:
        loss_entry = registry.get("losses", term.loss)
        heads = term.heads if term.heads == "each" else list(term.heads)
        losses.append({"loss": loss_entry.qualified_name, "weight": term.weight,
                       "args": {**loss_entry.item.defaults, **term.args}, "heads": heads})
    train = build_train_config(method.train, train_overrides)
    return validate_data(dict(
        method=Provider.of(method_entry), backbone=Provider.of(backbone_entry),
        backbone_args={**backbone.defaults, **method.backbone_args, **backbone_overrides},
        embed_dim=backbone.embed_dim, num_outputs=backbone.num_outputs,
        normalization=backbone.normalization, heads=tuple(method.heads), neck=method.neck,
        losses=tuple(losses), train=train, overrides=dict(overrides),
    ), ResolvedRecipe, f"the recipe of {method_entry.qualified_name} with these settings")


def build_model(recipe: ResolvedRecipe, num_persons: int, num_clothes: int, registry: Registry) -> nn.Module:
    """The backbone through its factory, wrapped with the method's neck and classifiers."""
    from atzoo.model import ReIDModel

    backbone_item = registry.get("backbones", recipe.backbone.qualified_name).item
    try:
        backbone = backbone_item.factory(**recipe.backbone_args)
    except TypeError as error:
        raise AtzooError(f"backbone {recipe.backbone.qualified_name} rejected its arguments "
                         f"{recipe.backbone_args}: {error}") from None
    embed_dim = int(getattr(backbone, "embed_dim", recipe.embed_dim))
    method = registry.get("methods", recipe.method.qualified_name).item
    if method.model_factory is not None:
        return method.model_factory(method, backbone, num_persons, num_clothes)
    return ReIDModel(backbone, embed_dim, recipe.heads, num_persons, num_clothes, neck=recipe.neck)


def loss_context(recipe: ResolvedRecipe, model: nn.Module, num_persons: int, num_clothes: int) -> LossContext:
    return LossContext(num_persons=num_persons, num_clothes=num_clothes,
                       embed_dim=int(getattr(model, "embed_dim", recipe.embed_dim)), num_heads=len(recipe.heads),
                       heads=tuple(recipe.heads))


# ---------------------------------------------------------------------------------------------
# recipe files: `atzoo train --config recipe.yaml`, written by `atzoo describe methods M --format yaml`


def recipe_document(recipe: ResolvedRecipe) -> dict[str, Any]:
    """The recipe as a recipe file holds it: the method, its backbone's arguments, every setting."""
    return {"method": recipe.method.qualified_name, "backbone": dict(recipe.backbone_args),
            "train": recipe.train.model_dump(mode="json")}


def recipe_file_overrides(document: Any, source: str) -> tuple[str | None, dict[str, Any]]:
    """A recipe file's content as (method or None, overrides in `--set` form); unknown keys are errors."""
    if not isinstance(document, dict):
        raise AtzooError(f"{source}: a recipe file holds a mapping with keys {', '.join(RECIPE_FILE_KEYS)}; "
                         f"found {type(document).__name__}")
    unknown = sorted(str(key) for key in document if key not in RECIPE_FILE_KEYS)
    if unknown:
        raise AtzooError(f"{source}: unknown key(s) {', '.join(unknown)}; a recipe file has only "
                         f"{', '.join(RECIPE_FILE_KEYS)}")
    method = document.get("method")
    if method is not None and (not isinstance(method, str) or not method):
        raise AtzooError(f"{source}: method must be a method name, got {method!r}")
    overrides: dict[str, Any] = {}
    for section, prefix in (("backbone", BACKBONE_PREFIX), ("train", "")):
        values = document.get(section) or {}
        if not isinstance(values, dict) or not all(isinstance(key, str) for key in values):
            raise AtzooError(f"{source}: {section} must be a mapping of names to values, got {values!r}")
        overrides.update({prefix + key: value for key, value in values.items()})
    return method, overrides


def read_recipe_file(path: str | Path) -> tuple[str | None, dict[str, Any]]:
    """Read a YAML or JSON recipe file (by its suffix; YAML otherwise). Syntax errors name the line;
    a key given twice is an error."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise AtzooError(f"cannot read recipe file {path}: {error}") from None
    document = parse_json(text, str(path)) if path.suffix.lower() == ".json" else _parse_yaml(text, path)
    return recipe_file_overrides(document, str(path))


def _parse_yaml(text: str, path: Path) -> Any:
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            keys = [self.construct_object(key_node, deep=deep) for key_node, _ in node.value]
            for index, key in enumerate(keys):
                if key in keys[:index]:
                    line = node.value[index][0].start_mark.line + 1
                    raise AtzooError(f"{path}: line {line}: key {key!r} is given twice")
            return super().construct_mapping(node, deep=deep)

    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark is not None else ""
        raise AtzooError(f"{path}: YAML syntax error at {where}{error.problem or error}") from None
    except yaml.YAMLError as error:
        raise AtzooError(f"{path}: not valid YAML: {error}") from None
