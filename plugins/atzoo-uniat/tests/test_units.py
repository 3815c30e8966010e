"""Each part of Uni-AT on its own (scenario tokens, attribute experts and their gate, SAID, HDW),
and the whole: the same weights file, the same outputs and losses as before the code was split
into these units (``data/reference_before_restructure.safetensors``, recorded with the previous
single-module code on CPU)."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from atzoo.plugin import LossContext
from atzoo_uniat.hdw import TERM_GROUPS, TIME_GROUPS, combine_hdw, group_weights, hdw_weights
from atzoo_uniat.losses import build_said
from atzoo_uniat.model import build_vit_6tok
from atzoo_uniat.said import head_sample_masks, said_mask

REFERENCE = Path(__file__).parent / "data" / "reference_before_restructure.safetensors"
REFERENCE_MODEL = {"model_name": "vit_tiny_patch16_224", "depth": 2, "embed_dim": 16, "num_heads": 2,
                   "img_size": (32, 16), "drop_path_rate": 0.0}


@pytest.fixture(scope="module")
def reference():
    return load_file(str(REFERENCE))


# ---------------------------------------------------------------------------------------------
# scenario tokens


def test_scenario_tokens_copy_the_class_token_and_come_first():
    import timm

    from atzoo_uniat.scenario_tokens import prepend_scenario_tokens, scenario_tokens

    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, depth=1, embed_dim=8,
                            num_heads=2)
    tokens, positions = scenario_tokens(vit, 6)
    assert tokens.shape == positions.shape == (1, 6, 8)
    assert all(torch.equal(tokens[0, t], vit.cls_token[0, 0]) for t in range(6))
    assert all(torch.equal(positions[0, t], vit.pos_embed[0, 0]) for t in range(6))
    assert tokens.data_ptr() != vit.cls_token.data_ptr()
    patches = torch.randn(3, 4, 8)
    sequence = prepend_scenario_tokens(tokens, positions, patches)
    assert sequence.shape == (3, 10, 8)
    assert torch.equal(sequence[:, 6:], patches) and torch.equal(sequence[1, 2], tokens[0, 2] + positions[0, 2])


# ---------------------------------------------------------------------------------------------
# MoAE: attribute experts and their gate


def _mlp(dim=8, hidden=16):
    from timm.layers import Mlp

    torch.manual_seed(0)
    return Mlp(dim, hidden)


def test_every_attribute_expert_starts_as_a_copy_of_the_mlp_with_its_own_storage():
    from atzoo_uniat.moae import MixtureOfAttributeExperts

    mlp = _mlp()
    moae = MixtureOfAttributeExperts(mlp, "top1", 6)
    for expert in moae.experts.values():
        assert torch.equal(expert.fc1.weight, mlp.fc1.weight) and torch.equal(expert.fc2.bias, mlp.fc2.bias)
        assert expert.fc1.weight.data_ptr() != mlp.fc1.weight.data_ptr()
    tokens = torch.randn(2, 6, 8)
    with torch.no_grad():
        assert torch.allclose(moae(tokens), mlp(tokens), atol=1e-6)   # identical experts: any path is the MLP


def test_the_top1_gate_is_one_hot_and_the_soft_gate_a_distribution():
    from atzoo_uniat.moae import ScenarioGates

    tokens = torch.randn(4, 6, 8)
    torch.manual_seed(1)
    top1 = ScenarioGates(8, 6, "top1")
    weights = top1.path_weights(tokens)
    assert weights.shape == (4, 6, 2) and set(weights.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(weights.argmax(-1), top1.logits(tokens).argmax(-1))
    assert not weights.requires_grad
    torch.manual_seed(1)
    soft = ScenarioGates(8, 6, "soft")
    mixed = soft.path_weights(tokens)
    assert torch.allclose(mixed.sum(-1), torch.ones(4, 6)) and mixed.requires_grad


def test_a_token_takes_exactly_the_path_its_gate_chose():
    from atzoo_uniat.moae import MixtureOfAttributeExperts
    from atzoo_uniat.scenarios import allowed_paths

    moae = MixtureOfAttributeExperts(_mlp(), "top1", 6)
    with torch.no_grad():
        for name, expert in moae.experts.items():
            expert.fc2.bias.add_(float(len(name)))   # make the experts differ
        for gate in moae.gates:
            gate.weight.zero_()
            gate.bias.copy_(torch.tensor([0.0, 1.0]))   # every token: path 1, c->m
    tokens = torch.randn(2, 6, 8)
    with torch.no_grad():
        output = moae(tokens)
        for t in range(6):
            first, second = allowed_paths(t)[1]
            assert torch.equal(output[:, t], moae.path(tokens[:, t], first, second))


# ---------------------------------------------------------------------------------------------
# SAID and HDW


def test_said_sample_masks_follow_the_head_modalities():
    masks = head_sample_masks(torch.tensor([1, 2, 2]))
    assert masks.tolist() == [[True, False, False], [True, False, False], [False, True, True],
                              [False, True, True], [True, True, True], [True, True, True]]


def test_said_hides_only_other_outfits_of_the_same_person():
    mask = said_mask(torch.tensor([0, 1]), torch.tensor([1, 2]), torch.tensor([0, 0, 1]))
    assert mask.tolist() == [[True, False, False], [False, False, False]]


def test_hdw_weighs_the_harder_group_most_and_normalises_each_level():
    probabilities = torch.tensor([[0.9], [0.9], [0.5], [0.5], [0.1], [0.1]])
    masks = torch.ones(6, 1)
    time = group_weights(probabilities, masks, TIME_GROUPS)
    assert time.argmax() == 2 and time.max() == 1.0
    assert torch.allclose(time, torch.tensor([0.1, 0.5, 0.9]).sqrt() / 0.9 ** 0.5)
    weights = hdw_weights(-probabilities.log(), masks)
    term = group_weights(probabilities, masks, TERM_GROUPS)
    assert torch.allclose(weights, torch.stack([time[h // 2] * term[h % 2] for h in range(6)]))
    assert torch.allclose(combine_hdw(torch.ones(6, 2), torch.ones(6, 2), torch.full((6,), 0.5)), torch.tensor(3.0))


# ---------------------------------------------------------------------------------------------
# the whole, against the recorded reference


@pytest.mark.parametrize("gate", ["top1", "soft"])
def test_the_model_reads_the_same_weights_and_gives_the_same_outputs(reference, gate):
    torch.manual_seed(0)
    model = build_vit_6tok(**REFERENCE_MODEL, gate=gate).eval()
    state = {key[len("state."):]: value for key, value in reference.items() if key.startswith("state.")}
    assert set(model.state_dict()) == set(state)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), f"{key}: the same seed no longer builds the same weights"
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        output = model(reference[f"{gate}.images"])
    torch.testing.assert_close(output, reference[f"{gate}.output"], rtol=0, atol=1e-6)
    torch.testing.assert_close(model.last_gate_weights, reference[f"{gate}.gates"], rtol=0, atol=0)


@pytest.mark.parametrize("hdw", [False, True])
@pytest.mark.parametrize("epsilon", [0.0, 0.1])
def test_the_said_loss_gives_the_same_values(reference, hdw, epsilon):
    logits = [reference[f"loss.logits.{i}"] for i in range(6)]
    context = LossContext(num_persons=3, num_clothes=6, embed_dim=8, num_heads=6)
    loss = build_said(context, hdw=hdw, epsilon=epsilon)
    value = loss(logits, reference["loss.person"], reference["loss.clothes"], reference["loss.modality"],
                 reference["loss.c2p"])
    key = f"hdw{int(hdw)}.eps{epsilon}"
    torch.testing.assert_close(value.reshape(1), reference[f"loss.value.{key}"], rtol=0, atol=1e-6)
    torch.testing.assert_close(loss.last_weights, reference[f"loss.weights.{key}"], rtol=0, atol=0)
