"""A method's recipe resolved against the registry and the user's overrides, and what it builds.

The resolved recipe is what a run directory's `config.json` stores: with it (and the plugins it
names) the model can be rebuilt anywhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from atzoo.config import TrainConfig, build_train_config
from atzoo.errors import AtzooError
from atzoo.model import ReIDModel
from atzoo.plugin import LossContext

BACKBONE_PREFIX = "backbone."
BACKBONE_SHORTCUTS = ("pretrained",)
"""Backbone arguments that `--set` also takes without the prefix (``--set pretrained=PATH``)."""


@dataclass(frozen=True)
class Provider:
    qualified_name: str
    plugin: str
    distribution: str
    version: str

    @classmethod
    def of(cls, entry) -> Provider:
        return cls(entry.qualified_name, entry.plugin, entry.distribution, entry.version)


@dataclass(frozen=True)
class ResolvedRecipe:
    method: Provider
    backbone: Provider
    backbone_args: dict[str, Any]
    embed_dim: int
    num_outputs: int
    input_size: tuple[int, int]
    normalization: tuple[tuple[float, ...], tuple[float, ...]]
    heads: tuple[str, ...]
    neck: str
    losses: tuple[dict[str, Any], ...]
    train: TrainConfig
    overrides: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["train"] = self.train.model_dump(mode="json")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ResolvedRecipe:
        return cls(
            method=Provider(**data["method"]), backbone=Provider(**data["backbone"]),
            backbone_args=data["backbone_args"], embed_dim=data["embed_dim"], num_outputs=data["num_outputs"],
            input_size=tuple(data["input_size"]), normalization=tuple(tuple(v) for v in data["normalization"]),
            heads=tuple(data["heads"]), neck=data["neck"], losses=tuple(data["losses"]),
            train=build_train_config(data["train"]), overrides=data.get("overrides", {}),
        )


def split_overrides(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`backbone.X=...` keys (and the shortcuts, `pretrained=...`) go to the backbone's factory;
    every other key is a training setting."""
    backbone = {k[len(BACKBONE_PREFIX):]: v for k, v in overrides.items() if k.startswith(BACKBONE_PREFIX)}
    backbone.update((k, v) for k, v in overrides.items() if k in BACKBONE_SHORTCUTS)
    train = {k: v for k, v in overrides.items() if not k.startswith(BACKBONE_PREFIX) and k not in BACKBONE_SHORTCUTS}
    return backbone, train


def resolve_recipe(method_name: str, overrides: dict[str, Any], registry) -> ResolvedRecipe:
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
    return ResolvedRecipe(
        method=Provider.of(method_entry), backbone=Provider.of(backbone_entry),
        backbone_args={**backbone.defaults, **method.backbone_args, **backbone_overrides},
        embed_dim=backbone.embed_dim, num_outputs=backbone.num_outputs, input_size=tuple(train.image_size),
        normalization=backbone.normalization, heads=tuple(method.heads), neck=method.neck,
        losses=tuple(losses), train=train, overrides=dict(overrides),
    )


def build_model(recipe: ResolvedRecipe, num_persons: int, num_clothes: int, registry) -> nn.Module:
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
