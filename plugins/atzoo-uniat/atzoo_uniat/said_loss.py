"""The ``said`` loss module: SAID per (head, sample), combined plainly or with HDW weights."""

from __future__ import annotations

import torch
from torch import nn

from atzoo_uniat.hdw import combine_hdw, hdw_weights
from atzoo_uniat.said import NUM_HEADS, combine_plain, head_sample_masks, said_per_sample_losses


class SAIDLoss(nn.Module):
    """SAID, optionally weighted by HDW. ``last_weights`` holds the head weights of the last call
    (all ones without HDW) for logging and inspection."""

    def __init__(self, hdw: bool, epsilon: float) -> None:
        super().__init__()
        self.hdw = hdw
        self.epsilon = epsilon
        self.last_weights: torch.Tensor | None = None

    def forward(self, all_logits: list[torch.Tensor], person: torch.Tensor, clothes: torch.Tensor,
                modality: torch.Tensor, clothes_to_person: torch.Tensor) -> torch.Tensor:
        losses = said_per_sample_losses(all_logits, person, clothes, clothes_to_person, self.epsilon)
        masks = head_sample_masks(modality)
        if not self.hdw:
            self.last_weights = torch.ones(NUM_HEADS, device=losses.device)
            return combine_plain(losses, masks)
        self.last_weights = hdw_weights(losses, masks)
        return combine_hdw(losses, masks, self.last_weights)

    def extra_repr(self) -> str:
        return f"hdw={self.hdw}, epsilon={self.epsilon}"
