"""SAID, the scenario-aware identity loss: which samples and which identities each head learns.

Six heads in protocol order: 0 DT-ST, 1 DT-LT, 2 NT-ST, 3 NT-LT, 4 AD-ST, 5 AD-LT.

- Which samples a head sees: DT heads only RGB samples, NT heads only infrared samples, AD heads
  every sample (`head_sample_masks`).
- What a head classifies: long-term heads the person, short-term heads the clothes identity, with
  the logits of the same person's *other* outfits masked out (`said_mask`), so a short-term head
  is never pushed to separate one person's outfits from each other.
- Without HDW (`atzoo_uniat.hdw`) the loss is the plain mean of the six head losses
  (`combine_plain`); each head loss is the mean over the samples it sees, and a head that sees no
  sample in the batch (no infrared image, say) contributes 0 (the mean is still over six heads).

Torch is imported inside the functions so the plugin module stays light.
"""

from __future__ import annotations

from typing import Any

from atzoo.errors import AtzooError

NUM_HEADS = 6
SHORT_TERM_HEADS = (0, 2, 4)
HEAD_MODALITY = (1, 1, 2, 2, None, None)
"""The modality a head trains on (1 RGB, 2 infrared); None: every sample."""
MASKED_LOGIT = -1.0e4
"""What a masked logit is set to: exp() of it underflows to 0, and it stays finite in bf16."""


def head_sample_masks(modality: Any) -> Any:
    """(B,) modality labels -> (6, B) bool: which samples each head is trained on."""
    import torch

    rows = [torch.ones_like(modality, dtype=torch.bool) if wanted is None else modality == wanted
            for wanted in HEAD_MODALITY]
    return torch.stack(rows)


def said_mask(person: Any, clothes: Any, clothes_to_person: Any) -> Any:
    """(B, C) bool, True where sample i's logit for clothes identity c is masked: c belongs to
    sample i's person but is not the outfit it wears."""
    import torch

    num_clothes = clothes_to_person.shape[0]
    same_person = clothes_to_person.unsqueeze(0) == person.unsqueeze(1)
    own_outfit = torch.arange(num_clothes, device=clothes.device).unsqueeze(0) == clothes.unsqueeze(1)
    return same_person & ~own_outfit


def masked_cross_entropy(logits: Any, target: Any, mask: Any = None, epsilon: float = 0.0) -> Any:
    """Per-sample cross entropy (B,) with the ``mask``ed logits removed from the softmax; label
    smoothing ``epsilon`` spreads over the classes left, never over masked ones."""
    import torch

    logits = logits.float()
    if mask is not None:
        logits = logits.masked_fill(mask, MASKED_LOGIT)
    log_probs = torch.log_softmax(logits, dim=1)
    nll = -log_probs.gather(1, target.unsqueeze(1)).squeeze(1)
    if epsilon == 0.0:
        return nll
    kept = torch.ones_like(log_probs, dtype=torch.bool) if mask is None else ~mask
    smooth = -torch.where(kept, log_probs, torch.zeros_like(log_probs)).sum(1) / kept.sum(1)
    return (1.0 - epsilon) * nll + epsilon * smooth


def said_per_sample_losses(all_logits: list, person: Any, clothes: Any, clothes_to_person: Any,
                           epsilon: float = 0.0) -> Any:
    """(6, B): every head's per-sample loss on every sample (the head masks are applied later)."""
    import torch

    _check_heads(all_logits)
    outfit_mask = said_mask(person, clothes, clothes_to_person)
    rows = []
    for head, logits in enumerate(all_logits):
        if head in SHORT_TERM_HEADS:
            _check_columns(logits, clothes_to_person.shape[0], head, "clothes identities")
            rows.append(masked_cross_entropy(logits, clothes, outfit_mask, epsilon))
        else:
            rows.append(masked_cross_entropy(logits, person, None, epsilon))
    return torch.stack(rows)


def combine_plain(per_sample_losses: Any, masks: Any) -> Any:
    """Mean over the six heads of each head's mean over its samples (0 for a head without any)."""
    masks = masks.to(per_sample_losses.dtype)
    head_losses = (per_sample_losses * masks).sum(1) / masks.sum(1).clamp(min=1)
    return head_losses.mean()


def _check_heads(all_logits: list) -> None:
    if len(all_logits) != NUM_HEADS:
        raise AtzooError(f"the said loss needs a six-head model (DT-ST ... AD-LT), got {len(all_logits)} head(s); "
                         f"use it with the uniat:vit-6tok backbone")


def _check_columns(logits: Any, expected: int, head: int, what: str) -> None:
    if logits.shape[1] != expected:
        raise AtzooError(f"said loss: head {head} has {logits.shape[1]} logits; expected one per {what} "
                         f"({expected}); its method must declare heads 0, 2, 4 as 'clothes'")
