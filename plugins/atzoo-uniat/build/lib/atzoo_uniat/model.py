"""The Uni-AT backbone: a timm Vision Transformer with six scenario class tokens and MoAE.

Six learnable class tokens, one per scenario in protocol order (DT-ST, DT-LT, NT-ST, NT-LT, AD-ST,
AD-LT), each with its own position embedding, are prepended to the patch tokens. The backbone
returns the six tokens after the final norm: (B, 6, D). Any timm ``VisionTransformer`` with
absolute position embeddings works (``vit_base_patch16_224`` as published, ``vit_tiny_patch16_224``
and ``depth``/``embed_dim``/``num_heads`` overrides for small runs).

MoAE (mixture of attribute experts), as implemented here. Every block owns five attribute
experts -- ``visible``, ``infrared``, ``cross`` (cross-modality), ``same`` (same clothes),
``change`` (clothes change) -- each an input layer ``fc1`` and an output layer ``fc2`` with the
shapes of the block's MLP, both copied from it at build time (so from the pretrained MLP when
weights are loaded). Scenario ``(m, c)`` -- modality attribute m: DT visible, NT infrared, AD
cross; clothes attribute c: ST same, LT change -- may take two paths through the experts:

- path 0, "m->c": ``fc2_c(act(fc1_m(x)))``, the modality expert's input layer then the clothes
  expert's output layer;
- path 1, "c->m": ``fc2_m(act(fc1_c(x)))``, the reverse.

Each class token has its own gate in every block, a ``Linear(D, 2)`` applied to the token after
the block's second norm; logit k scores path k. The class tokens
take the expert path instead of the block's shared MLP; the patch tokens always take the shared
MLP. Gate variants:

- ``"top1"`` (published): each token takes the path with the larger logit. The path's output is
  not scaled by the gate, so the gate receives no gradient and keeps its initial weights: the
  routing is a fixed function of the token, set at initialisation.
- ``"soft"``: the output is the softmax-weighted sum of both paths, so the gate is learned.

``moae=False`` gives every token the shared MLP (the baseline). ``vit-1tok`` is the one-token
unified-embedding variant: a single class token and no experts, returning (B, D).

Torch and timm are imported inside the functions so that registering the plugin stays cheap.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Sequence

from atzoo.errors import AtzooError
from atzoo.plugin import IMAGENET_NORMALIZATION, Backbone

SCENARIOS = ("DT-ST", "DT-LT", "NT-ST", "NT-LT", "AD-ST", "AD-LT")
ATTRIBUTES = ("visible", "infrared", "cross", "same", "change")
SCENARIO_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("visible", "same"), ("visible", "change"),
    ("infrared", "same"), ("infrared", "change"),
    ("cross", "same"), ("cross", "change"),
)
"""(modality attribute, clothes attribute) of each scenario, in protocol order."""
GATES = ("top1", "soft")
DEFAULT_MODEL = "vit_base_patch16_224"


def allowed_paths(scenario: int) -> tuple[tuple[str, str], tuple[str, str]]:
    """The two (input expert, output expert) paths scenario ``scenario`` may take: m->c, c->m."""
    modality, clothes = SCENARIO_ATTRIBUTES[scenario]
    return (modality, clothes), (clothes, modality)


@functools.lru_cache(maxsize=None)
def _module_classes():
    """Define the torch modules lazily: torch is imported only when a backbone is built."""
    import torch
    from torch import nn

    class AttributeExpert(nn.Module):
        """One attribute's input (fc1) and output (fc2) MLP layers, copied from a block's MLP."""

        def __init__(self, mlp: nn.Module) -> None:
            super().__init__()
            self.fc1 = _copy_linear(mlp.fc1)
            self.fc2 = _copy_linear(mlp.fc2)

    class MixtureOfAttributeExperts(nn.Module):
        """The class tokens' replacement for a block's MLP (see the module docstring)."""

        def __init__(self, mlp: nn.Module, gate: str, num_tokens: int) -> None:
            super().__init__()
            import copy

            self.gate_kind = gate
            self.experts = nn.ModuleDict({name: AttributeExpert(mlp) for name in ATTRIBUTES})
            self.gates = nn.ModuleList(nn.Linear(mlp.fc1.in_features, 2) for _ in range(num_tokens))
            self.act = copy.deepcopy(mlp.act)
            self.drop1 = copy.deepcopy(mlp.drop1)
            self.drop2 = copy.deepcopy(mlp.drop2)
            self.last_weights: torch.Tensor | None = None

        def _path(self, x: torch.Tensor, first: str, second: str) -> torch.Tensor:
            hidden = self.drop1(self.act(self.experts[first].fc1(x)))
            return self.drop2(self.experts[second].fc2(hidden))

        def gate_weights(self, tokens: torch.Tensor) -> torch.Tensor:
            """(B, T, 2) path weights: one-hot for top1 (no gradient), softmax for soft."""
            if self.gate_kind == "top1":
                with torch.no_grad():
                    choice = self._gate_logits(tokens).argmax(dim=-1)
                return nn.functional.one_hot(choice, 2).to(tokens.dtype)
            return self._gate_logits(tokens).softmax(dim=-1)

        def _gate_logits(self, tokens: torch.Tensor) -> torch.Tensor:
            return torch.stack([gate(tokens[:, t]) for t, gate in enumerate(self.gates)], dim=1)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            weights = self.gate_weights(tokens)
            self.last_weights = weights.detach()
            outputs = []
            for index in range(tokens.shape[1]):
                token = tokens[:, index]
                path0, path1 = (self._path(token, a, b) for a, b in allowed_paths(index))
                outputs.append(weights[:, index, 0:1] * path0 + weights[:, index, 1:2] * path1)
            return torch.stack(outputs, dim=1)

    class UniATBlock(nn.Module):
        """A timm ViT block whose first ``num_tokens`` tokens (the class tokens) may use MoAE.

        It adopts the timm block's submodules under their own names, so the shared parameters
        keep timm's names (``blocks.3.attn.qkv.weight``, ``blocks.3.mlp.fc1.weight``, ...)."""

        def __init__(self, block: nn.Module, num_tokens: int, moae: bool, gate: str) -> None:
            super().__init__()
            for name in ("norm1", "attn", "ls1", "drop_path1", "norm2", "mlp", "ls2", "drop_path2"):
                setattr(self, name, getattr(block, name))
            self.num_tokens = num_tokens
            self.moae = MixtureOfAttributeExperts(block.mlp, gate, num_tokens) if moae else None

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x))))
            hidden = self.norm2(x)
            if self.moae is None:
                update = self.mlp(hidden)
            else:
                tokens, patches = hidden[:, :self.num_tokens], hidden[:, self.num_tokens:]
                update = torch.cat([self.moae(tokens), self.mlp(patches)], dim=1)
            return x + self.drop_path2(self.ls2(update))

    class UniATViT(nn.Module):
        """Patch embedding (configurable stride) + class tokens + UniAT blocks + final norm.

        ``forward(images)`` returns the class tokens after the final norm: (B, 6, D) with six
        tokens, (B, D) with one. ``forward_tokens`` returns the whole normed sequence."""

        def __init__(self, vit: nn.Module, num_tokens: int, moae: bool, gate: str,
                     img_size: tuple[int, int], patch_stride: int, model_name: str) -> None:
            super().__init__()
            self.model_name = model_name
            self.num_tokens = num_tokens
            self.embed_dim = int(vit.embed_dim)
            self.patch_size = tuple(vit.patch_embed.patch_size)
            self.patch_stride = patch_stride
            self.patch_embed = vit.patch_embed
            self.patch_embed.proj.stride = (patch_stride, patch_stride)
            self.grid_size = _grid(img_size, self.patch_size, patch_stride)
            token, token_pos, patch_pos = _pretrained_embeddings(vit)
            self.cls_tokens = nn.Parameter(token.expand(-1, num_tokens, -1).clone())
            self.cls_pos_embed = nn.Parameter(token_pos.expand(-1, num_tokens, -1).clone())
            self.pos_embed = nn.Parameter(
                _resample(patch_pos, tuple(vit.patch_embed.grid_size), self.grid_size).detach().clone())
            self.pos_drop = vit.pos_drop
            self.norm_pre = vit.norm_pre
            self.blocks = nn.ModuleList(UniATBlock(block, num_tokens, moae, gate) for block in vit.blocks)
            self.norm = vit.fc_norm if isinstance(vit.norm, nn.Identity) else vit.norm

        def _embed(self, images: torch.Tensor) -> torch.Tensor:
            patches = self.patch_embed.proj(images)
            grid = tuple(patches.shape[-2:])
            patches = self.patch_embed.norm(patches.flatten(2).transpose(1, 2))
            pos = self.pos_embed if grid == self.grid_size else _resample(self.pos_embed, self.grid_size, grid)
            tokens = (self.cls_tokens + self.cls_pos_embed).expand(images.shape[0], -1, -1)
            return torch.cat([tokens, patches + pos], dim=1)

        def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
            """(B, num_tokens + num_patches, D): every token after the final norm."""
            if images.ndim != 4 or images.shape[1] != 3:
                raise AtzooError(f"expected images of shape (B, 3, H, W); got {tuple(images.shape)}")
            x = self.norm_pre(self.pos_drop(self._embed(images)))
            for block in self.blocks:
                x = block(x)
            return self.norm(x)

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            tokens = self.forward_tokens(images)[:, :self.num_tokens]
            return tokens[:, 0] if self.num_tokens == 1 else tokens

        @property
        def last_gate_weights(self) -> torch.Tensor | None:
            """(blocks, B, T, 2) path weights of the last forward; None without MoAE."""
            weights = [block.moae.last_weights for block in self.blocks if block.moae is not None]
            if not weights or any(w is None for w in weights):
                return None
            return torch.stack(weights)

        @property
        def last_routing(self) -> list[list[tuple[tuple[str, str], ...]]] | None:
            """``[block][token]``: the (input expert, output expert) paths that token took, with a
            non-zero weight, for any image of the last forward. None without MoAE."""
            weights = self.last_gate_weights
            if weights is None:
                return None
            return [[tuple(path for k, path in enumerate(allowed_paths(t)) if bool((block[:, t, k] > 0).any()))
                     for t in range(self.num_tokens)] for block in weights]

    return UniATViT


def _copy_linear(layer):
    import copy

    import torch

    clone = copy.deepcopy(layer)
    with torch.no_grad():
        for parameter in clone.parameters():
            parameter.data = parameter.data.clone()
    return clone


def _grid(img_size: tuple[int, int], patch_size: tuple[int, int], stride: int) -> tuple[int, int]:
    return tuple((size - patch) // stride + 1 for size, patch in zip(img_size, patch_size))


def _resample(pos, old_grid: tuple[int, int], new_grid: tuple[int, int]):
    from timm.layers import resample_abs_pos_embed

    if tuple(old_grid) == tuple(new_grid):
        return pos
    return resample_abs_pos_embed(pos, list(new_grid), old_size=list(old_grid), num_prefix_tokens=0)


def _pretrained_embeddings(vit):
    """The timm model's class token (1, 1, D), its position embedding (1, 1, D) and the patch
    position embeddings (1, N, D)."""
    import torch

    dim = vit.embed_dim
    prefix = 0 if vit.no_embed_class else vit.num_prefix_tokens
    with torch.no_grad():
        patch_pos = vit.pos_embed[:, prefix:].clone()
        token = vit.cls_token.clone() if vit.cls_token is not None else torch.zeros(1, 1, dim).normal_(std=0.02)
        if prefix and vit.cls_token is not None:
            token_pos = vit.pos_embed[:, :1].clone()
        else:
            token_pos = torch.zeros(1, 1, dim)
    return token, token_pos, patch_pos


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


def _build(num_tokens: int, *, model_name: str, pretrained: bool | str, img_size: Sequence[int], patch_stride: int,
           drop_path_rate: float, moae: bool, gate: str, depth: int | None, embed_dim: int | None,
           num_heads: int | None):
    size = _check_args(model_name, img_size, patch_stride, gate)
    overrides = {k: v for k, v in (("depth", depth), ("embed_dim", embed_dim), ("num_heads", num_heads))
                 if v is not None}
    if embed_dim is not None and num_heads is not None and embed_dim % num_heads:
        raise AtzooError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
    vit = _create_vit(model_name, pretrained, drop_path_rate, overrides)
    if min(size[0] - vit.patch_embed.patch_size[0], size[1] - vit.patch_embed.patch_size[1]) < 0:
        raise AtzooError(f"img_size {size} is smaller than the patch size {tuple(vit.patch_embed.patch_size)}")
    return _module_classes()(vit, num_tokens, bool(moae), gate, size, patch_stride, model_name)


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
