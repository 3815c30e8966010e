"""The host's Re-ID model: a registered backbone, a neck and one classifier per head.

In train mode the model returns everything a loss may consume; in eval mode it returns the
retrieval embeddings: (B, D) for a one-head model, (B, 6, D) for a six-head model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from atzoo.errors import AtzooError


class BNNeck(nn.Module):
    """BatchNorm with its bias frozen at zero (Luo et al. 2019); its output is the embedding."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        self.bn.bias.requires_grad_(False)
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.bn(features)


class ReIDModel(nn.Module):
    """backbone -> per-head neck -> per-head bias-free classifier.

    ``heads[i]`` is what head i classifies: ``"person"`` or ``"clothes"`` (clothes identity).
    """

    def __init__(self, backbone: nn.Module, embed_dim: int, heads: tuple[str, ...], num_persons: int,
                 num_clothes: int, neck: str = "bnneck") -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = tuple(heads)
        self.embed_dim = embed_dim
        if neck == "bnneck":
            self.necks = nn.ModuleList(BNNeck(embed_dim) for _ in heads)
        elif neck == "linear":
            self.necks = nn.ModuleList(nn.Identity() for _ in heads)
        else:
            raise AtzooError(f"unknown neck {neck!r}; expected 'bnneck' or 'linear'")
        sizes = {"person": num_persons, "clothes": num_clothes}
        self.classifiers = nn.ModuleList(nn.Linear(embed_dim, sizes[target], bias=False) for target in heads)
        for classifier in self.classifiers:
            assert isinstance(classifier, nn.Linear)
            nn.init.normal_(classifier.weight, std=0.001)

    def backbone_features(self, images: torch.Tensor) -> torch.Tensor:
        raw = self.backbone(images)
        features = raw.unsqueeze(1) if raw.ndim == 2 else raw
        if features.ndim != 3 or features.shape[1] != len(self.heads) or features.shape[2] != self.embed_dim:
            expected = f"(B, {self.embed_dim})" if len(self.heads) == 1 else f"(B, {len(self.heads)}, {self.embed_dim})"
            raise AtzooError(f"the backbone returned features of shape {tuple(raw.shape)}; expected {expected}")
        return features

    def forward(self, images: torch.Tensor) -> torch.Tensor | dict[str, Any]:
        features = self.backbone_features(images)
        embeddings = torch.stack([neck(features[:, i]) for i, neck in enumerate(self.necks)], dim=1)
        if not self.training:
            return embeddings[:, 0] if len(self.heads) == 1 else embeddings
        logits = [classifier(embeddings[:, i]) for i, classifier in enumerate(self.classifiers)]
        return {"features": features, "embeddings": embeddings, "logits": logits}
