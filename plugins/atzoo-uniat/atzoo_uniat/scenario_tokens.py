"""Scenario tokens: one learnable class token per scenario, each with its own position embedding.

All of them start as copies of the (pretrained) ViT's class token and of its position embedding,
so the six outputs agree until training separates them. They are prepended to the patch tokens.
The parameters live on the ViT itself (``cls_tokens``, ``cls_pos_embed``), so their names in a
weights file do not depend on how this code is organised.
"""

from __future__ import annotations

import torch
from torch import nn


def pretrained_class_token(vit: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The timm ViT's class token (1, 1, D) and its position embedding (1, 1, D); a ViT without a
    class token gives a fresh one (std 0.02) and a zero position embedding."""
    dim = vit.embed_dim
    prefix = 0 if vit.no_embed_class else vit.num_prefix_tokens
    with torch.no_grad():
        token = vit.cls_token.clone() if vit.cls_token is not None else torch.zeros(1, 1, dim).normal_(std=0.02)
        if prefix and vit.cls_token is not None:
            token_pos = vit.pos_embed[:, :1].clone()
        else:
            token_pos = torch.zeros(1, 1, dim)
    return token, token_pos


def scenario_tokens(vit: nn.Module, num_tokens: int) -> tuple[nn.Parameter, nn.Parameter]:
    """(tokens, their position embeddings), each (1, num_tokens, D), copied from the class token."""
    token, token_pos = pretrained_class_token(vit)
    return (nn.Parameter(token.expand(-1, num_tokens, -1).clone()),
            nn.Parameter(token_pos.expand(-1, num_tokens, -1).clone()))


def prepend_scenario_tokens(tokens: torch.Tensor, token_pos: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
    """(B, T + N, D): each scenario token plus its position embedding, then the (B, N, D) patches."""
    return torch.cat([(tokens + token_pos).expand(patches.shape[0], -1, -1), patches], dim=1)
