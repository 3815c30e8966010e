"""HDW, hierarchical dynamic weighting: harder scenario groups weigh more.

Per (head, sample) loss, p = exp(-loss). The weight of a group is sqrt(1 - mean p over its
(head, sample) pairs), normalised by the largest weight of its level, for the time groups
DT/NT/AD and the term groups ST/LT; a head's weight is time weight x term weight, detached. The
weighted per-sample losses are summed and divided by the batch size (`combine_hdw`).

Torch is imported inside the functions so the plugin module stays light.
"""

from __future__ import annotations

from typing import Any

from atzoo_uniat.said import NUM_HEADS

TIME_GROUPS = ((0, 1), (2, 3), (4, 5))
"""DT, NT, AD: the heads of each time-of-day group."""
TERM_GROUPS = ((0, 2, 4), (1, 3, 5))
"""ST, LT: the heads of each time-span group."""


def group_weights(probabilities: Any, masks: Any, groups: tuple[tuple[int, ...], ...]) -> Any:
    """sqrt(1 - mean p over each group's (head, sample) pairs), divided by the largest of them.

    A group without any sample gets weight 0 and does not take part in the normalisation."""
    import torch

    raw = []
    for heads in groups:
        selected = masks[list(heads)]
        count = selected.sum()
        mean_p = (probabilities[list(heads)] * selected).sum() / count.clamp(min=1)
        raw.append(torch.where(count > 0, (1.0 - mean_p).clamp(min=0.0).sqrt(), torch.zeros_like(mean_p)))
    weights = torch.stack(raw)
    return weights / weights.max().clamp(min=1e-12)


def hdw_weights(per_sample_losses: Any, masks: Any) -> Any:
    """(6,) detached head weights from (6, B) per-sample losses and (6, B) sample masks:
    p = exp(-loss); time weight (DT/NT/AD) x term weight (ST/LT), each level normalised by its max."""
    import torch

    with torch.no_grad():
        probabilities = torch.exp(-per_sample_losses.detach().float())
        masks = masks.to(probabilities.dtype)
        time = group_weights(probabilities, masks, TIME_GROUPS)
        term = group_weights(probabilities, masks, TERM_GROUPS)
        weights = torch.empty(NUM_HEADS, dtype=probabilities.dtype, device=probabilities.device)
        for group, heads in enumerate(TIME_GROUPS):
            for head in heads:
                weights[head] = time[group]
        for group, heads in enumerate(TERM_GROUPS):
            for head in heads:
                weights[head] = weights[head] * term[group]
    return weights


def combine_hdw(per_sample_losses: Any, masks: Any, weights: Any) -> Any:
    """sum over heads and samples of weight[head] x loss, divided by the batch size."""
    masks = masks.to(per_sample_losses.dtype)
    batch_size = per_sample_losses.shape[1]
    return (weights.unsqueeze(1) * masks * per_sample_losses).sum() / batch_size
