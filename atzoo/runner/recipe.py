"""A method's recipe resolved against the registry and the user's overrides, and what it builds.

The resolved recipe (`atzoo.formats.recipe.ResolvedRecipe`) is what a run directory's `config.json`
stores: with it (and the plugins it names) the model can be rebuilt anywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

from atzoo.config import build_train_config
from atzoo.errors import AtzooError
from atzoo.formats.model import validate_data
from atzoo.formats.recipe import Provider, ResolvedRecipe
from atzoo.model import ReIDModel
from atzoo.plugin import LossContext

if TYPE_CHECKING:
    from atzoo.registry import Registry

BACKBONE_PREFIX = "backbone."
BACKBONE_SHORTCUTS = ("pretrained",)
"""Backbone arguments that `--set` also takes without the prefix (``--set pretrained=PATH``)."""


def split_overrides(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`backbone.X=...` keys (and the shortcuts, `pretrained=...`) go to the backbone's factory;
    every other key is a training setting."""
    backbone = {k[len(BACKBONE_PREFIX):]: v for k, v in overrides.items() if k.startswith(BACKBONE_PREFIX)}
    backbone.update((k, v) for k, v in overrides.items() if k in BACKBONE_SHORTCUTS)
    train = {k: v for k, v in overrides.items() if not k.startswith(BACKBONE_PREFIX) and k not in BACKBONE_SHORTCUTS}
    return backbone, train


def resolve_recipe(method_name: str, overrides: dict[str, Any], registry: Registry) -> ResolvedRecipe:
    method_entry = registry.get("methods", method_name)
    method = method_entry.item
    backbone_entry = registry.get("backbones", method.backbone)
    backbone = backbone_entry.item
    backbone_overrides, train_overrides = split_overrides(overrides)
    if len(method.heads) != backbone.num_outputs:
        raise AtzooError(f"method {method_entry.qualified_name} has {len(method.heads)} head(s) but backbone "
                         f"{backbone_entry.qualified_name} has {backbone.num_outputs} output(s)")
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
        embed_dim=backbone.embed_dim, num_outputs=backbone.num_outputs, input_size=tuple(train.image_size),
        normalization=backbone.normalization, heads=tuple(method.heads), neck=method.neck,
        losses=tuple(losses), train=train, overrides=dict(overrides),
    ), ResolvedRecipe, f"the recipe of {method_entry.qualified_name} with these settings")


def build_model(recipe: ResolvedRecipe, num_persons: int, num_clothes: int, registry: Registry) -> nn.Module:
    """The backbone through its factory, wrapped with the method's neck and classifiers."""
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
