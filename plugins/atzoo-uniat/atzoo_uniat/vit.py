"""The Uni-AT ViT, top down: scenario tokens + patches -> blocks (MoAE for the tokens) -> final norm.

It wraps a timm ``VisionTransformer`` and adopts its submodules under timm's names, so shared
parameters keep timm's names (``blocks.3.attn.qkv.weight``); the additions are ``cls_tokens``,
``cls_pos_embed`` (`scenario_tokens`) and ``blocks.N.moae.*`` (`moae`).
"""

from __future__ import annotations

import torch
from torch import nn

from atzoo.errors import AtzooError
from atzoo_uniat.moae import MixtureOfAttributeExperts
from atzoo_uniat.scenario_tokens import prepend_scenario_tokens, scenario_tokens
from atzoo_uniat.scenarios import allowed_paths


class UniATViT(nn.Module):
    """``forward(images)``: the scenario tokens after the final norm, (B, 6, D) with six tokens,
    (B, D) with one. ``forward_tokens``: the whole normed sequence."""

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
        self.grid_size = patch_grid(img_size, self.patch_size, patch_stride)
        self.cls_tokens, self.cls_pos_embed = scenario_tokens(vit, num_tokens)
        self.pos_embed = nn.Parameter(resample_positions(pretrained_patch_positions(vit),
                                                         tuple(vit.patch_embed.grid_size), self.grid_size)
                                      .detach().clone())
        self.pos_drop = vit.pos_drop
        self.norm_pre = vit.norm_pre
        self.blocks = nn.ModuleList(UniATBlock(block, num_tokens, moae, gate) for block in vit.blocks)
        self.norm = vit.fc_norm if isinstance(vit.norm, nn.Identity) else vit.norm

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.forward_tokens(images)[:, :self.num_tokens]
        return tokens[:, 0] if self.num_tokens == 1 else tokens

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(B, num_tokens + num_patches, D): every token after the final norm."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise AtzooError(f"expected images of shape (B, 3, H, W); got {tuple(images.shape)}")
        x = self.norm_pre(self.pos_drop(self.embed(images)))
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The scenario tokens, then the patch embeddings with their (resampled) positions."""
        patches = self.patch_embed.proj(images)
        grid = tuple(patches.shape[-2:])
        patches = self.patch_embed.norm(patches.flatten(2).transpose(1, 2))
        pos = self.pos_embed if grid == self.grid_size else resample_positions(self.pos_embed, self.grid_size, grid)
        return prepend_scenario_tokens(self.cls_tokens, self.cls_pos_embed, patches + pos)

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


class UniATBlock(nn.Module):
    """A timm ViT block whose first ``num_tokens`` tokens (the scenario tokens) may use MoAE; the
    patch tokens always take the block's shared MLP."""

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


def patch_grid(img_size: tuple[int, int], patch_size: tuple[int, int], stride: int) -> tuple[int, int]:
    """Patches per side: ``(size - patch) // stride + 1`` (overlapping below the patch size)."""
    return tuple((size - patch) // stride + 1 for size, patch in zip(img_size, patch_size))


def pretrained_patch_positions(vit: nn.Module) -> torch.Tensor:
    """(1, N, D): the timm model's position embeddings of its patches (its class token's dropped)."""
    prefix = 0 if vit.no_embed_class else vit.num_prefix_tokens
    with torch.no_grad():
        return vit.pos_embed[:, prefix:].clone()


def resample_positions(pos: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]) -> torch.Tensor:
    """Patch position embeddings resampled (bicubic) from one grid to another."""
    from timm.layers import resample_abs_pos_embed

    if tuple(old_grid) == tuple(new_grid):
        return pos
    return resample_abs_pos_embed(pos, list(new_grid), old_size=list(old_grid), num_prefix_tokens=0)
