"""SAID and HDW, checked against values worked out by hand."""

import math

import pytest
import torch

from atzoo.errors import AtzooError
from atzoo.plugin import LossContext
from atzoo_uniat.losses import (LOSSES, build_said, combine_hdw, combine_plain, group_weights, hdw_weights,
                                head_sample_masks, masked_cross_entropy, said_mask, said_per_sample_losses)

# Four samples: person 0 in outfit 0 (RGB) and outfit 1 (IR); person 1 in outfit 2 (RGB, IR).
# Clothes identities 0, 1 belong to person 0; 2, 3 to person 1.
PERSON = torch.tensor([0, 0, 1, 1])
CLOTHES = torch.tensor([0, 1, 2, 2])
MODALITY = torch.tensor([1, 2, 1, 2])
CLOTHES_TO_PERSON = torch.tensor([0, 0, 1, 1])
CONTEXT = LossContext(num_persons=2, num_clothes=4, embed_dim=8, num_heads=6)


def _logits(seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    sizes = (4, 2, 4, 2, 4, 2)
    return [torch.randn(4, size, generator=generator) for size in sizes]


def _ce(row: torch.Tensor, target: int, allowed: list[int]) -> float:
    values = [float(row[c]) for c in allowed]
    return -float(row[target]) + math.log(sum(math.exp(v) for v in values))


def test_the_mask_hides_only_the_same_persons_other_outfits():
    mask = said_mask(PERSON, CLOTHES, CLOTHES_TO_PERSON)
    assert mask.tolist() == [
        [False, True, False, False],   # person 0 wears 0: its other outfit 1 is hidden
        [True, False, False, False],   # person 0 wears 1: outfit 0 hidden
        [False, False, False, True],   # person 1 wears 2: outfit 3 hidden
        [False, False, False, True],
    ]


def test_each_head_sees_its_scenarios_modality():
    masks = head_sample_masks(MODALITY)
    rgb, ir, every = [True, False, True, False], [False, True, False, True], [True] * 4
    assert masks.tolist() == [rgb, rgb, ir, ir, every, every]


def test_per_sample_losses_follow_the_hand_computation():
    logits = _logits()
    losses = said_per_sample_losses(logits, PERSON, CLOTHES, CLOTHES_TO_PERSON)
    allowed = {0: [0, 2, 3], 1: [1, 2, 3], 2: [0, 1, 2], 3: [0, 1, 2]}
    for head in (0, 2, 4):
        for i in range(4):
            expected = _ce(logits[head][i], int(CLOTHES[i]), allowed[i])
            assert float(losses[head, i]) == pytest.approx(expected, rel=1e-5)
    for head in (1, 3, 5):
        for i in range(4):
            assert float(losses[head, i]) == pytest.approx(_ce(logits[head][i], int(PERSON[i]), [0, 1]), rel=1e-5)


def test_said_without_hdw_is_the_mean_of_six_head_means():
    logits = _logits()
    losses = said_per_sample_losses(logits, PERSON, CLOTHES, CLOTHES_TO_PERSON)
    expected = (losses[0, [0, 2]].mean() + losses[1, [0, 2]].mean() + losses[2, [1, 3]].mean()
                + losses[3, [1, 3]].mean() + losses[4].mean() + losses[5].mean()) / 6
    value = build_said(CONTEXT)(all_logits=logits, person=PERSON, clothes=CLOTHES, modality=MODALITY,
                                clothes_to_person=CLOTHES_TO_PERSON)
    assert float(value) == pytest.approx(float(expected), rel=1e-6)


def test_a_head_without_samples_contributes_zero():
    losses = torch.full((6, 2), 2.0)
    masks = head_sample_masks(torch.tensor([1, 1]))          # no infrared: NT heads see nothing
    assert float(combine_plain(losses, masks)) == pytest.approx(2.0 * 4 / 6)


def test_masked_logits_do_not_enter_the_softmax_even_when_huge():
    logits = torch.tensor([[0.0, 50.0, 0.0]])
    mask = torch.tensor([[False, True, False]])
    assert float(masked_cross_entropy(logits, torch.tensor([0]), mask)[0]) == pytest.approx(math.log(2), rel=1e-6)
    smoothed = masked_cross_entropy(logits, torch.tensor([0]), mask, epsilon=0.2)
    assert float(smoothed[0]) == pytest.approx(math.log(2), rel=1e-6)   # uniform over the two kept classes


def test_hdw_weights_match_the_hand_computation():
    # p = exp(-loss) chosen directly: loss = -log p.
    p = torch.tensor([
        [0.9, 0.0, 0.7, 0.0],    # DT-ST on RGB samples 0, 2
        [0.5, 0.0, 0.3, 0.0],    # DT-LT
        [0.0, 0.6, 0.0, 0.2],    # NT-ST on IR samples 1, 3
        [0.0, 0.4, 0.0, 0.4],    # NT-LT
        [0.8, 0.6, 0.4, 0.2],    # AD-ST on all
        [0.1, 0.3, 0.5, 0.7],    # AD-LT
    ])
    masks = head_sample_masks(MODALITY)
    losses = torch.where(masks, -torch.log(p.clamp(min=1e-9)), torch.zeros_like(p))
    dt = math.sqrt(1 - (0.9 + 0.7 + 0.5 + 0.3) / 4)       # 0.6 -> sqrt(0.4)
    nt = math.sqrt(1 - (0.6 + 0.2 + 0.4 + 0.4) / 4)       # 0.4 -> sqrt(0.6)
    ad = math.sqrt(1 - (0.8 + 0.6 + 0.4 + 0.2 + 0.1 + 0.3 + 0.5 + 0.7) / 8)   # 0.45 -> sqrt(0.55)
    st = math.sqrt(1 - (0.9 + 0.7 + 0.6 + 0.2 + 0.8 + 0.6 + 0.4 + 0.2) / 8)   # 0.55 -> sqrt(0.45)
    lt = math.sqrt(1 - (0.5 + 0.3 + 0.4 + 0.4 + 0.1 + 0.3 + 0.5 + 0.7) / 8)   # 0.4 -> sqrt(0.6)
    time = [dt / nt, 1.0, ad / nt]
    term = [st / lt, 1.0]
    expected = [time[0] * term[0], time[0], time[1] * term[0], time[1], time[2] * term[0], time[2]]
    weights = hdw_weights(losses, masks)
    assert weights.tolist() == pytest.approx(expected, rel=1e-5)
    assert not weights.requires_grad

    total = combine_hdw(losses, masks, weights)
    by_hand = sum(expected[h] * float(losses[h, i]) for h in range(6) for i in range(4) if masks[h, i]) / 4
    assert float(total) == pytest.approx(by_hand, rel=1e-5)


def test_a_time_group_without_samples_gets_weight_zero_and_is_left_out_of_the_normalisation():
    p = torch.tensor([[0.5, 0.5]] * 6)
    p[4:] = 0.0
    weights = group_weights(p, head_sample_masks(torch.tensor([1, 1])).float(), ((0, 1), (2, 3), (4, 5)))
    assert weights.tolist() == pytest.approx([math.sqrt(0.5) / 1.0, 0.0, 1.0])


def test_said_with_hdw_weights_the_loss_and_records_the_weights():
    logits = [t.requires_grad_() for t in _logits(1)]
    loss = build_said(CONTEXT, hdw=True)
    value = loss(all_logits=logits, person=PERSON, clothes=CLOTHES, modality=MODALITY,
                 clothes_to_person=CLOTHES_TO_PERSON)
    per_sample = said_per_sample_losses(logits, PERSON, CLOTHES, CLOTHES_TO_PERSON)
    masks = head_sample_masks(MODALITY)
    expected_weights = hdw_weights(per_sample, masks)
    assert loss.last_weights.tolist() == pytest.approx(expected_weights.tolist())
    assert float(loss.last_weights.max()) == pytest.approx(1.0)
    assert float(value.detach()) == pytest.approx(float(combine_hdw(per_sample, masks, expected_weights).detach()),
                                                  rel=1e-6)
    value.backward()
    assert logits[3].grad[[0, 2]].abs().sum() == 0          # NT-LT never sees RGB samples
    assert logits[3].grad[[1, 3]].abs().sum() > 0
    assert logits[0].grad[0, 1] == 0                        # masked outfit: no gradient


def test_gradients_stay_finite_in_bfloat16():
    logits = [t.to(torch.bfloat16).requires_grad_() for t in _logits(2)]
    value = build_said(CONTEXT, hdw=True)(all_logits=logits, person=PERSON, clothes=CLOTHES, modality=MODALITY,
                                         clothes_to_person=CLOTHES_TO_PERSON)
    value.backward()
    assert torch.isfinite(value) and all(torch.isfinite(t.grad.float()).all() for t in logits)


def test_wrong_models_and_arguments_are_refused_with_a_clear_message():
    with pytest.raises(AtzooError, match="six-head"):
        build_said(CONTEXT)(all_logits=_logits()[:2], person=PERSON, clothes=CLOTHES, modality=MODALITY,
                            clothes_to_person=CLOTHES_TO_PERSON)
    person_heads = [torch.randn(4, 2) for _ in range(6)]
    with pytest.raises(AtzooError, match="clothes"):
        build_said(CONTEXT)(all_logits=person_heads, person=PERSON, clothes=CLOTHES, modality=MODALITY,
                            clothes_to_person=CLOTHES_TO_PERSON)
    with pytest.raises(AtzooError, match="epsilon"):
        build_said(CONTEXT, epsilon=1.5)


def test_the_loss_is_registered_and_conforms():
    from atzoo.testing import check_loss

    (said,) = LOSSES
    assert said.consumes == ("all_logits", "person", "clothes", "modality", "clothes_to_person")
    context = LossContext(num_persons=4, num_clothes=4, embed_dim=16, num_heads=6)
    for hdw in (False, True):
        summary = check_loss("uniat:said", context=context, hdw=hdw)
        assert summary["value"] > 0
