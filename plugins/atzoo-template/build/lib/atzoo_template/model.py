"""The plugin's model code (imports torch; loaded only when an item is built)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from atzoo.plugin import LossContext


class TemplateNet(nn.Module):
    """images (B, 3, H, W) -> features (B, embed_dim). `embed_dim` tells the host the feature size."""

    def __init__(self, embed_dim: int = 64, width: int = 16) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        layers, channels = [], 3
        for out in (width, width * 2, embed_dim):
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
            channels = out
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)


class CosineMarginLoss(nn.Module):
    """CosFace (Wang et al. 2018): softmax over scale * (cos(theta) - margin at the true class).

    Its class weights are parameters: the host trains them with the model. `forward` takes exactly
    the inputs named in the registration's `consumes`.
    """

    def __init__(self, context: LossContext, scale: float = 16.0, margin: float = 0.1) -> None:
        super().__init__()
        self.scale, self.margin = scale, margin
        self.weight = nn.Parameter(torch.randn(context.num_persons, context.embed_dim) * 0.01)

    def forward(self, embeddings: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        cosine = F.normalize(embeddings.float(), dim=1) @ F.normalize(self.weight, dim=1).t()
        logits = self.scale * (cosine - self.margin * F.one_hot(target, cosine.shape[1]))
        return F.cross_entropy(logits, target)
