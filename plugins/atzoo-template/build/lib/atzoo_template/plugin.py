"""The hooks atzoo calls. Keep this module light: torch is imported inside the factories only,
so that `atzoo list` and `atzoo --help` stay fast."""

from __future__ import annotations

from typing import Any

from atzoo.plugin import Backbone, Loss, LossContext, LossTerm, Method, hookimpl


def build_backbone(embed_dim: int = 64, width: int = 16) -> Any:
    """The backbone's factory: every argument has a default, listed again in `defaults` below."""
    from atzoo_template.model import TemplateNet

    return TemplateNet(embed_dim=embed_dim, width=width)


def build_loss(context: LossContext, scale: float = 16.0, margin: float = 0.1) -> Any:
    """A loss factory receives the host's LossContext (number of persons, embedding size, ...)."""
    from atzoo_template.model import CosineMarginLoss

    return CosineMarginLoss(context, scale=scale, margin=margin)


@hookimpl
def atzoo_register_backbones(register) -> None:
    register(Backbone(
        name="template-net", factory=build_backbone, embed_dim=64, defaults={"embed_dim": 64, "width": 16},
        input_size=(128, 64), description="Template: three conv blocks and average pooling."))


@hookimpl
def atzoo_register_losses(register) -> None:
    register(Loss(
        name="template-cosface", factory=build_loss, consumes=("embeddings", "target"),
        defaults={"scale": 16.0, "margin": 0.1},
        description="Template: a CosFace-style margin loss with its own learnable class weights."))


@hookimpl
def atzoo_register_methods(register) -> None:
    register(Method(
        name="template", backbone="template:template-net",
        losses=(LossTerm("template:template-cosface"), LossTerm("builtins:triplet", weight=1.0)),
        train={"optimizer": "adam", "lr": 1e-3, "epochs": 10, "iters_per_epoch": 30,
               "num_persons": 8, "num_instances": 4, "image_size": [128, 64]},
        description="Template method: template-net + BNNeck + template-cosface + batch-hard triplet."))
