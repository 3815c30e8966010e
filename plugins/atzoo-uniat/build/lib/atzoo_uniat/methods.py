"""The Uni-AT recipes: the full method, the four ablation rows and the one-token variant.

Every recipe carries the published training settings (`PUBLISHED_RECIPE`); `CPU_OVERRIDES` is the
documented small budget (a two-block, 64-dim ViT at 64x32, a few short epochs) that trains and
evaluates a method on small synthetic data in about a minute on a laptop CPU.
"""

from __future__ import annotations

from typing import Any

from atzoo.plugin import LossTerm, Method

PAPER = "Li et al., Towards Anytime Retrieval: A Benchmark for Anytime Person Re-Identification, IJCAI 2025"
TASK_FAMILY = "AT-ReID"
SIX_TOKENS = "uniat:vit-6tok"
ONE_TOKEN = "uniat:vit-1tok"
SCENARIO_HEADS = ("clothes", "person", "clothes", "person", "clothes", "person")
"""Short-term heads (DT-ST, NT-ST, AD-ST) classify clothes identities, long-term heads persons."""
PERSON_HEADS = ("person",) * 6

VIT_BASE_DEPTH = 12


def last_blocks_lr_multipliers(depth: int, factor: float = 10.0) -> dict[str, float]:
    """x``factor`` learning rate for the last two transformer blocks, the final norm and the heads.

    Patterns are parameter-name substrings (`atzoo.config.TrainConfig.lr_multipliers`): ``blocks.N.``
    matches block N only (``blocks.1.`` does not match ``blocks.10.``), ``.norm.`` the final LayerNorm
    (block norms are ``norm1``/``norm2``), ``necks.``/``classifiers.`` the host's BNNecks and classifiers.
    """
    patterns = [f"blocks.{index}." for index in range(max(0, depth - 2), depth)]
    patterns += [".norm.", "necks.", "classifiers."]
    return {pattern: factor for pattern in patterns}


PUBLISHED_RECIPE: dict[str, Any] = {
    "optimizer": "sgd",
    "momentum": 0.9,
    "nesterov": True,
    "lr": 0.008,
    "weight_decay": 5e-4,
    "no_weight_decay": ["pos_embed", "cls_token", "norm", "bias"],
    "lr_multipliers": last_blocks_lr_multipliers(VIT_BASE_DEPTH),
    "grad_clip": 20.0,
    "warmup_epochs": 10,
    "warmup_factor": 0.1,
    "schedule": "cosine",
    "min_lr_factor": 0.002,
    "epochs": 120,
    "iters_per_epoch": 200,
    "num_persons": 8,
    "num_instances": 8,
    "modality_balanced": True,
    "image_size": [256, 128],
    "pad": 10,
    "flip": 0.5,
    "erasing": 0.5,
}
"""The paper's training settings: SGD Nesterov, lr 0.008 with x10 on the last blocks and heads,
10-epoch warm-up from 0.1x, cosine to 0.002x, 120 x 200 iterations of 8 persons x 8 images."""

CPU_DEPTH = 2
CPU_OVERRIDES: dict[str, Any] = {
    "backbone.model_name": "vit_tiny_patch16_224",
    "backbone.depth": CPU_DEPTH,
    "backbone.embed_dim": 64,
    "backbone.num_heads": 2,
    "backbone.img_size": [64, 32],
    "backbone.pretrained": False,
    "backbone.drop_path_rate": 0.0,
    "image_size": [64, 32],
    "pad": 4,
    "lr_multipliers": last_blocks_lr_multipliers(CPU_DEPTH),
    "epochs": 4,
    "iters_per_epoch": 8,
    "warmup_epochs": 1,
    "num_persons": 4,
    "num_instances": 4,
    "eval_batch_size": 64,
    "num_workers": 0,
    "cache": False,
    "amp": False,
}
"""A small budget for CPU runs (`atzoo train uniat --set KEY=VALUE` for each item, or
`python -m atzoo_uniat.ablation --budget cpu`): a randomly initialised two-block ViT of width 64
at 64x32, 4 epochs x 8 iterations of 4 persons x 4 images. It checks that the pipeline trains;
its numbers say nothing about the published ones."""


def _method(name: str, *, backbone: str = SIX_TOKENS, moae: bool | None = None, losses: tuple[LossTerm, ...],
            heads: tuple[str, ...] = SCENARIO_HEADS, description: str) -> Method:
    backbone_args: dict[str, Any] = {"pretrained": True}
    if moae is not None:
        backbone_args.update(moae=moae, gate="top1")
    return Method(name=name, backbone=backbone, backbone_args=backbone_args, losses=losses, heads=heads,
                  neck="bnneck", train=dict(PUBLISHED_RECIPE), task_family=TASK_FAMILY, paper=PAPER,
                  description=description)


def _said(hdw: bool) -> tuple[LossTerm, ...]:
    return (LossTerm("uniat:said", args={"hdw": hdw, "epsilon": 0.0}),)


PLAIN_ID = (LossTerm("builtins:cross_entropy", args={"epsilon": 0.0}),)
"""The baseline's identity loss: plain cross entropy on every head, averaged over the heads."""

METHODS = (
    _method("uniat", moae=True, losses=_said(hdw=True),
            description="Uni-AT: six scenario tokens, mixture of attribute experts, SAID loss with "
                        "hierarchical dynamic weighting"),
    _method("uniat-baseline", moae=False, losses=PLAIN_ID, heads=PERSON_HEADS,
            description="Uni-AT ablation baseline: six scenario tokens, each a person classifier trained "
                        "with plain cross entropy on every sample"),
    _method("uniat-said", moae=False, losses=_said(hdw=False),
            description="Uni-AT ablation: six scenario tokens + SAID loss"),
    _method("uniat-said-moae", moae=True, losses=_said(hdw=False),
            description="Uni-AT ablation: six scenario tokens + SAID loss + mixture of attribute experts"),
    _method("uniat-said-hdw", moae=False, losses=_said(hdw=True),
            description="Uni-AT ablation: six scenario tokens + SAID loss + hierarchical dynamic weighting"),
    _method("uniat-1tok", backbone=ONE_TOKEN, losses=PLAIN_ID, heads=("person",),
            description="Uni-AT one-token variant: a single unified embedding for every scenario, "
                        "a person classifier with plain cross entropy"),
)

ABLATION_ROWS = ("uniat-baseline", "uniat-said", "uniat-said-moae", "uniat-said-hdw", "uniat")
"""The paper's ablation table, top to bottom."""
