"""Built-in losses, as defined in FastReID and torchreid.

Each is an ``nn.Module`` built as ``Loss(context, **args)`` whose ``forward`` takes exactly the
inputs its registration lists in ``consumes`` (see `atzoo.plugin.LOSS_INPUTS`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from atzoo.errors import AtzooError
from atzoo.plugin import LossContext


class CrossEntropyLabelSmooth(nn.Module):
    """Cross entropy against ``(1 - epsilon) * one_hot + epsilon / num_classes`` (Szegedy et al. 2016)."""

    def __init__(self, context: LossContext | None = None, epsilon: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= epsilon < 1.0:
            raise AtzooError(f"cross_entropy epsilon must be in [0, 1), got {epsilon}")
        self.epsilon = float(epsilon)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), target, label_smoothing=self.epsilon)


def pairwise_euclidean(features: torch.Tensor) -> torch.Tensor:
    """(B, D) -> (B, B) Euclidean distances, with a floor so the gradient of sqrt stays finite."""
    squared = features.pow(2).sum(1, keepdim=True)
    dist = squared + squared.t() - 2.0 * features @ features.t()
    return dist.clamp(min=1e-12).sqrt()


def hardest_pairs(dist: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per anchor, the farthest positive and the nearest negative distance (batch-hard mining).

    An anchor without another positive uses itself (distance ~0); without any negative, a large
    constant, so its triplet term is zero.
    """
    same = target.unsqueeze(0) == target.unsqueeze(1)
    hardest_positive = (dist * same).max(dim=1).values
    hardest_negative = (dist + same.to(dist.dtype) * 1e8).min(dim=1).values
    return hardest_positive, hardest_negative


class TripletLoss(nn.Module):
    """Batch-hard triplet loss (Hermans et al. 2017) on Euclidean distances.

    ``margin``: hinge ``relu(d_ap - d_an + margin)``; ``soft_margin=True`` uses
    ``softplus(d_ap - d_an)`` instead. ``normalize``: L2-normalise features first.
    """

    def __init__(self, context: LossContext | None = None, margin: float = 0.3, soft_margin: bool = False,
                 normalize: bool = False) -> None:
        super().__init__()
        if margin < 0:
            raise AtzooError(f"triplet margin must be >= 0, got {margin}")
        self.margin = float(margin)
        self.soft_margin = bool(soft_margin)
        self.normalize = bool(normalize)

    def forward(self, features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        features = features.float()
        if self.normalize:
            features = F.normalize(features, dim=1)
        positive, negative = hardest_pairs(pairwise_euclidean(features), target)
        if self.soft_margin:
            return F.softplus(positive - negative).mean()
        return F.relu(positive - negative + self.margin).mean()


class CenterLoss(nn.Module):
    """Center loss (Wen et al. 2016): mean squared distance of each feature to its class centre.

    The centres are parameters trained with the model, one table per head (a person head and a
    clothes head do not share centres), sized for the larger of the person and clothes label sets.
    """

    def __init__(self, context: LossContext) -> None:
        super().__init__()
        num_classes = max(context.num_persons, context.num_clothes)
        self.centers = nn.Parameter(torch.randn(max(context.num_heads, 1), num_classes, context.embed_dim))

    def forward(self, features: torch.Tensor, target: torch.Tensor, head: int) -> torch.Tensor:
        centers = self.centers[head]
        if features.shape[1] != centers.shape[1]:
            raise AtzooError(f"center loss built for {centers.shape[1]}-d features got {features.shape[1]}-d ones")
        distances = (features.float() - centers[target]).pow(2).sum(1)
        return distances.clamp(min=1e-12, max=1e12).mean()


def cross_entropy(context: LossContext, epsilon: float = 0.1) -> CrossEntropyLabelSmooth:
    return CrossEntropyLabelSmooth(context, epsilon=epsilon)


def triplet(context: LossContext, margin: float = 0.3, soft_margin: bool = False,
            normalize: bool = False) -> TripletLoss:
    return TripletLoss(context, margin=margin, soft_margin=soft_margin, normalize=normalize)


def center(context: LossContext) -> CenterLoss:
    return CenterLoss(context)
