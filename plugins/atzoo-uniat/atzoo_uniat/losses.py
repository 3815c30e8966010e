"""The Uni-AT loss as the host sees it: ``said`` = SAID (`atzoo_uniat.said`), optionally
weighted by HDW (`atzoo_uniat.hdw`).

Torch is imported inside the functions so the plugin module stays light.
"""

from __future__ import annotations

from atzoo.errors import AtzooError
from atzoo.plugin import Loss
from atzoo_uniat.hdw import TERM_GROUPS, TIME_GROUPS, combine_hdw, group_weights, hdw_weights
from atzoo_uniat.said import (HEAD_MODALITY, MASKED_LOGIT, NUM_HEADS, SHORT_TERM_HEADS, combine_plain,
                              head_sample_masks, masked_cross_entropy, said_mask, said_per_sample_losses)

__all__ = ["LOSSES", "build_said", "combine_hdw", "combine_plain", "group_weights", "hdw_weights",
           "head_sample_masks", "masked_cross_entropy", "said_mask", "said_per_sample_losses", "HEAD_MODALITY",
           "MASKED_LOGIT", "NUM_HEADS", "SHORT_TERM_HEADS", "TERM_GROUPS", "TIME_GROUPS"]


def build_said(context, hdw: bool = False, epsilon: float = 0.0):
    """The SAID loss module for ``context`` (a `atzoo.plugin.LossContext`)."""
    if not 0.0 <= float(epsilon) < 1.0:
        raise AtzooError(f"said epsilon must be in [0, 1), got {epsilon}")
    if not isinstance(hdw, bool):
        raise AtzooError(f"said hdw must be true or false, got {hdw!r}")
    from atzoo_uniat.said_loss import SAIDLoss

    return SAIDLoss(hdw=hdw, epsilon=float(epsilon))


LOSSES = (
    Loss(
        name="said",
        factory=build_said,
        consumes=("all_logits", "person", "clothes", "modality", "clothes_to_person"),
        defaults={"hdw": False, "epsilon": 0.0},
        description="Uni-AT scenario-aware identity loss: DT heads on RGB, NT heads on infrared, AD heads on "
                    "all samples; short-term heads classify outfits with the same person's other outfits "
                    "masked; hdw=true adds hierarchical dynamic weighting",
    ),
)
