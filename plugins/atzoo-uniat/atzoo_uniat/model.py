"""The Uni-AT backbone, top down: a timm Vision Transformer with six scenario tokens and MoAE.

Six learnable class tokens, one per scenario in protocol order (DT-ST, DT-LT, NT-ST, NT-LT, AD-ST,
AD-LT), each with its own position embedding, are prepended to the patch tokens
(`atzoo_uniat.scenario_tokens`). In every block the scenario tokens take the mixture of attribute
experts instead of the shared MLP (`atzoo_uniat.moae`); the patch tokens keep the shared MLP. The
backbone returns the six tokens after the final norm: (B, 6, D) (`atzoo_uniat.vit`). Any timm
``VisionTransformer`` with absolute position embeddings works (``vit_base_patch16_224`` as
published, ``vit_tiny_patch16_224`` and ``depth``/``embed_dim``/``num_heads`` overrides for small
runs). ``moae=False`` gives every token the shared MLP (the baseline). ``vit-1tok`` is the
one-token unified-embedding variant: a single class token and no experts, returning (B, D).

This module only describes and builds: torch and timm are imported when a backbone is built, so
registering the plugin stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from collections.abc import Sequence

from atzoo.errors import AtzooError
from atzoo.plugin import IMAGENET_NORMALIZATION, Backbone
from atzoo_uniat.scenarios import ATTRIBUTES, SCENARIO_ATTRIBUTES, SCENARIOS, allowed_paths

__all__ = ["ATTRIBUTES", "SCENARIO_ATTRIBUTES", "SCENARIOS", "allowed_paths", "BACKBONES", "build_vit_6tok",
           "build_vit_1tok", "load_vit_weights"]

GATES = ("top1", "soft")
"""The MoAE gate variants (`atzoo_uniat.moae`): published ``top1``, learned ``soft``."""
DEFAULT_MODEL = "vit_base_patch16_224"


def build_vit_6tok(model_name: str = DEFAULT_MODEL, pretrained: bool | str = False,
                   img_size: Sequence[int] = (256, 128), patch_stride: int = 16, drop_path_rate: float = 0.2,
                   moae: bool = True, gate: str = "top1", depth: int | None = None, embed_dim: int | None = None,
                   num_heads: int | None = None) -> Any:
    """The Uni-AT ViT: six scenario class tokens, MoAE in every block; returns (B, 6, D).

    ``pretrained``: ``False`` (random init), ``True`` (timm's ImageNet weights from the hub) or a
    local ``.safetensors`` timm state dict of ``model_name``. ``img_size`` sets the grid the patch
    position embeddings are resampled to (other input sizes are resampled on the fly);
    ``patch_stride`` below the patch size gives overlapping patches. ``depth``, ``embed_dim``,
    ``num_heads`` override the timm architecture (small CPU models)."""
    return _build(6, model_name=model_name, pretrained=pretrained, img_size=img_size, patch_stride=patch_stride,
                  drop_path_rate=drop_path_rate, moae=moae, gate=gate, depth=depth, embed_dim=embed_dim,
                  num_heads=num_heads)


def build_vit_1tok(model_name: str = DEFAULT_MODEL, pretrained: bool | str = False,
                   img_size: Sequence[int] = (256, 128), patch_stride: int = 16, drop_path_rate: float = 0.2,
                   depth: int | None = None, embed_dim: int | None = None, num_heads: int | None = None) -> Any:
    """The one-token unified-embedding variant: the same ViT with one class token and no experts;
    returns (B, D). Arguments as for `build_vit_6tok`."""
    return _build(1, model_name=model_name, pretrained=pretrained, img_size=img_size, patch_stride=patch_stride,
                  drop_path_rate=drop_path_rate, moae=False, gate="top1", depth=depth, embed_dim=embed_dim,
                  num_heads=num_heads)


def _build(num_tokens: int, *, model_name: str, pretrained: bool | str, img_size: Sequence[int], patch_stride: int,
           drop_path_rate: float, moae: bool, gate: str, depth: int | None, embed_dim: int | None,
           num_heads: int | None):
    from atzoo_uniat.vit import UniATViT

    size = _check_args(model_name, img_size, patch_stride, gate)
    overrides = {k: v for k, v in (("depth", depth), ("embed_dim", embed_dim), ("num_heads", num_heads))
                 if v is not None}
    if embed_dim is not None and num_heads is not None and embed_dim % num_heads:
        raise AtzooError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
    vit = _create_vit(model_name, pretrained, drop_path_rate, overrides)
    if min(size[0] - vit.patch_embed.patch_size[0], size[1] - vit.patch_embed.patch_size[1]) < 0:
        raise AtzooError(f"img_size {size} is smaller than the patch size {tuple(vit.patch_embed.patch_size)}")
    return UniATViT(vit, num_tokens, bool(moae), gate, size, patch_stride, model_name)


def _check_args(model_name: str, img_size: Sequence[int], patch_stride: int, gate: str) -> tuple[int, int]:
    from atzoo.backbones import check_timm_model_name

    check_timm_model_name(model_name)
    if (not isinstance(img_size, (list, tuple)) or len(img_size) != 2
            or not all(isinstance(v, int) and v > 0 for v in img_size)):
        raise AtzooError(f"img_size must be two positive integers (height, width); got {img_size!r}")
    if not isinstance(patch_stride, int) or patch_stride < 1:
        raise AtzooError(f"patch_stride must be a positive integer; got {patch_stride!r}")
    if gate not in GATES:
        raise AtzooError(f"gate must be one of {GATES}; got {gate!r}")
    return int(img_size[0]), int(img_size[1])


def _create_vit(model_name: str, pretrained: bool | str, drop_path_rate: float, overrides: dict[str, Any]):
    from timm.models.vision_transformer import VisionTransformer

    from atzoo.backbones import create_timm_model

    vit = create_timm_model(model_name, pretrained is True, drop_path_rate=drop_path_rate, **overrides)
    if not isinstance(vit, VisionTransformer):
        raise AtzooError(f"timm model {model_name} is a {type(vit).__name__}; expected a VisionTransformer")
    if vit.pos_embed is None or getattr(vit, "num_reg_tokens", 0):
        raise AtzooError(f"timm model {model_name} needs absolute position embeddings and no register tokens")
    if pretrained not in (True, False, None):
        load_vit_weights(vit, Path(pretrained))
    return vit


def load_vit_weights(vit, path: Path) -> None:
    """Load a timm ViT state dict from a local ``.safetensors`` file into ``vit``.

    timm's checkpoint filter adapts the file first (position embeddings resampled to the model's
    grid, other ViT checkpoint layouts converted); classifier tensors are dropped; everything
    else must match exactly."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    from atzoo.backbones import load_local_weights

    load_local_weights(vit, path, convert=lambda state: checkpoint_filter_fn(state, vit))


_COMMON_DEFAULTS = {"model_name": DEFAULT_MODEL, "pretrained": False, "img_size": (256, 128), "patch_stride": 16,
                    "drop_path_rate": 0.2}

BACKBONES: tuple[Backbone, ...] = (
    Backbone(
        name="vit-6tok", factory=build_vit_6tok, embed_dim=768, num_outputs=6,
        defaults={**_COMMON_DEFAULTS, "moae": True, "gate": "top1"},
        input_size=(256, 128), normalization=IMAGENET_NORMALIZATION,
        description="Uni-AT ViT (timm VisionTransformer, ViT-B/16 by default): six scenario class tokens, "
                    "each with its own position embedding, returned after the final norm as (B, 6, D); "
                    "MoAE: five attribute experts per block for the class tokens (moae=true|false, "
                    "gate=top1|soft); pretrained: false, true (timm hub) or a local .safetensors path; "
                    "img_size, patch_stride (overlapping patches below the patch size), drop_path_rate, "
                    "depth/embed_dim/num_heads overrides."),
    Backbone(
        name="vit-1tok", factory=build_vit_1tok, embed_dim=768, num_outputs=1,
        defaults=dict(_COMMON_DEFAULTS),
        input_size=(256, 128), normalization=IMAGENET_NORMALIZATION,
        description="The one-token unified-embedding variant of the Uni-AT ViT: one class token, no "
                    "experts, (B, D); same arguments as vit-6tok without moae/gate."),
)
