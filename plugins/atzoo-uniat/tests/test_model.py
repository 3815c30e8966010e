"""The Uni-AT ViT: six scenario tokens, their initialisation, position embeddings, MoAE routing,
gate gradients, parameter count, pretrained loading and the host's backbone contract."""

import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from atzoo.errors import AtzooError
from atzoo.testing import check_backbone
from atzoo_uniat.model import ATTRIBUTES, allowed_paths, build_vit_1tok, build_vit_6tok

TINY = {"model_name": "vit_tiny_patch16_224", "depth": 2, "embed_dim": 64, "num_heads": 2,
        "img_size": (64, 32), "drop_path_rate": 0.0}


def tiny(**kwargs):
    torch.manual_seed(0)
    return build_vit_6tok(**{**TINY, **kwargs})


def images(batch=3, size=(64, 32)):
    torch.manual_seed(1)
    return torch.randn(batch, 3, *size)


@pytest.fixture(scope="module")
def timm_file(tmp_path_factory):
    """A random timm ViT (tiny, 2 blocks, 64-dim, with a 10-class head) saved as .safetensors."""
    import timm

    torch.manual_seed(3)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10, depth=2, embed_dim=64,
                            num_heads=2)
    path = tmp_path_factory.mktemp("weights") / "vit.safetensors"
    state = {k: v.contiguous() for k, v in vit.state_dict().items()}
    save_file(state, str(path))
    return path, state


@pytest.mark.parametrize("kwargs", [{}, {"moae": False}, {"gate": "soft"}])
def test_six_tokens_in_train_and_eval_mode(kwargs):
    model = tiny(**kwargs)
    assert model.embed_dim == 64
    assert model.train()(images()).shape == (3, 6, 64)
    assert model.eval()(images()).shape == (3, 6, 64)


def test_one_token_variant_returns_one_embedding_and_has_no_experts():
    model = build_vit_1tok(**TINY)
    assert model(images()).shape == (3, 64)
    assert model.cls_tokens.shape == (1, 1, 64)
    assert not any("moae" in name for name, _ in model.named_parameters())


def test_tokens_and_their_position_embeddings_start_from_the_pretrained_class_token(timm_file):
    path, state = timm_file
    model = build_vit_6tok(**{**TINY, "pretrained": str(path)})
    assert model.cls_tokens.shape == model.cls_pos_embed.shape == (1, 6, 64)
    for token in range(6):
        assert torch.equal(model.cls_tokens[0, token], state["cls_token"][0, 0])
        assert torch.equal(model.cls_pos_embed[0, token], state["pos_embed"][0, 0])
    assert model.cls_tokens.data_ptr() != model.cls_pos_embed.data_ptr()


def test_pretrained_file_loads_every_shared_weight_and_seeds_every_expert(timm_file):
    path, state = timm_file
    model = build_vit_6tok(**{**TINY, "pretrained": str(path)})
    own = model.state_dict()
    for key in ("patch_embed.proj.weight", "blocks.1.attn.qkv.weight", "blocks.0.mlp.fc2.bias", "norm.weight"):
        assert torch.equal(own[key], state[key]), key
    for block in range(2):
        for expert in ATTRIBUTES:
            for layer in ("fc1", "fc2"):
                name = f"blocks.{block}.moae.experts.{expert}.{layer}.weight"
                assert torch.equal(own[name], state[f"blocks.{block}.mlp.{layer}.weight"]), name
    expert = model.blocks[0].moae.experts["visible"].fc1.weight
    assert expert.data_ptr() != model.blocks[0].mlp.fc1.weight.data_ptr()


def test_patch_position_embeddings_are_resampled_from_the_pretrained_grid(timm_file):
    from timm.layers import resample_abs_pos_embed

    path, state = timm_file
    model = build_vit_6tok(**{**TINY, "pretrained": str(path)})
    assert model.grid_size == (4, 2)
    expected = resample_abs_pos_embed(state["pos_embed"][:, 1:], [4, 2], old_size=[14, 14], num_prefix_tokens=0)
    assert torch.allclose(model.pos_embed, expected)


def test_patch_stride_8_gives_overlapping_patches_on_a_denser_grid():
    model = tiny(patch_stride=8)
    assert model.patch_embed.proj.stride == (8, 8)
    assert model.grid_size == (7, 3)
    assert model.pos_embed.shape == (1, 21, 64)
    assert model.forward_tokens(images()).shape == (3, 6 + 21, 64)


def test_other_input_sizes_resample_the_position_embeddings_on_the_fly():
    model = tiny().eval()
    assert model.forward_tokens(images(size=(96, 48))).shape == (3, 6 + 18, 64)
    assert model.pos_embed.shape == (1, 8, 64)


def _perturb(model, experts, layers=("fc1", "fc2")):
    with torch.no_grad():
        for block in model.blocks:
            for name in experts:
                for layer in layers:
                    getattr(block.moae.experts[name], layer).weight.add_(1.0)


def test_each_class_token_uses_only_its_scenarios_experts():
    model = tiny(depth=1).eval()
    before = model.forward_tokens(images())
    _perturb(model, ("infrared", "change"))
    after = model.forward_tokens(images())
    changed = [not torch.allclose(before[:, t], after[:, t]) for t in range(6)]
    # DT-ST (visible, same) and AD-ST (cross, same) use neither the infrared nor the change expert
    assert changed == [False, True, True, True, False, True]
    assert torch.equal(before[:, 6:], after[:, 6:]), "patch tokens must keep the shared MLP"


def test_routing_record_names_only_allowed_paths_one_per_image_with_top1():
    model = tiny()
    model(images())
    weights = model.last_gate_weights
    assert weights.shape == (2, 3, 6, 2)
    assert torch.equal(weights.sum(-1), torch.ones(2, 3, 6)) and set(weights.unique().tolist()) == {0.0, 1.0}
    for block in model.last_routing:
        for token, paths in enumerate(block):
            assert paths and set(paths) <= set(allowed_paths(token))


def test_the_top1_gate_picks_the_direction_of_the_path():
    model = tiny(depth=1).eval()
    with torch.no_grad():
        for gate in model.blocks[0].moae.gates:
            gate.weight.zero_()
            gate.bias.copy_(torch.tensor([0.0, 5.0]))
    before = model(images())
    assert model.last_routing == [[(allowed_paths(t)[1],) for t in range(6)]]
    assert model.last_routing[0][0] == (("same", "visible"),)
    _perturb(model, ("visible",), layers=("fc1",))
    after = model(images())
    # path c->m never reads the visible expert's input layer
    assert torch.allclose(before, after)


def test_patch_tokens_never_use_experts_and_moae_false_has_none():
    model = tiny(depth=1).eval()
    before = model.forward_tokens(images())
    _perturb(model, ATTRIBUTES)
    after = model.forward_tokens(images())
    assert torch.equal(before[:, 6:], after[:, 6:])
    assert not torch.allclose(before[:, :6], after[:, :6])
    plain = tiny(moae=False)
    assert plain.last_routing is None
    assert not any("moae" in name for name, _ in plain.named_parameters())


def _gate_params(model):
    return [p for n, p in model.named_parameters() if ".gates." in n]


def _train_step(model, optimizer=None):
    optimizer = optimizer or torch.optim.SGD(model.parameters(), lr=0.5)
    optimizer.zero_grad(set_to_none=True)
    target = torch.randn(3, 6, 64, generator=torch.Generator().manual_seed(2))
    loss = (model(images()) - target).pow(2).mean()
    loss.backward()
    optimizer.step()
    return optimizer


def test_top1_gates_get_no_gradient_and_stay_fixed():
    model = tiny().train()
    gates = _gate_params(model)
    initial = [p.detach().clone() for p in gates]
    _train_step(model)
    assert all(p.grad is None for p in gates)
    assert all(torch.equal(p, q) for p, q in zip(gates, initial))
    assert model.blocks[0].moae.experts["visible"].fc1.weight.grad is not None


def test_soft_gates_are_learned():
    model = tiny(gate="soft").train()
    gates = _gate_params(model)
    optimizer = _train_step(model)
    assert all(p.grad is not None for p in gates)
    # at initialisation every expert is a copy of the MLP, so both paths agree and the gate's
    # gradient vanishes; once the experts differ the gate learns
    initial = [p.detach().clone() for p in gates]
    _train_step(model, optimizer)
    assert all(p.grad.abs().sum() > 0 for p in gates)
    assert all(not torch.equal(p, q) for p, q in zip(gates, initial))
    weights = model.last_gate_weights
    assert torch.allclose(weights.sum(-1), torch.ones_like(weights[..., 0]))
    assert ((weights > 0) & (weights < 1)).all()


def test_vit_base_parameter_count_matches_the_formula():
    import timm

    dim, hidden, depth, tokens = 768, 3072, 12, 6
    with torch.device("meta"):
        with_moae = build_vit_6tok(img_size=(224, 224))
        without = build_vit_6tok(img_size=(224, 224), moae=False)
        plain = timm.create_model("vit_base_patch16_224", num_classes=0)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    experts = depth * 5 * (dim * hidden + hidden + hidden * dim + dim)
    gates = depth * tokens * (dim * 2 + 2)
    assert count(with_moae) - count(without) == experts + gates
    assert 283e6 < experts < 284e6
    assert count(without) - count(plain) == 2 * (tokens - 1) * dim


@pytest.mark.parametrize("name", ["uniat:vit-6tok", "uniat:vit-1tok"])
def test_backbones_conform_to_the_host_contract(name):
    summary = check_backbone(name, image_size=(64, 32), model_name="vit_tiny_patch16_224", depth=2,
                             embed_dim=64, num_heads=2)
    assert summary["embed_dim"] == 64


def test_soft_gate_backbone_conforms():
    check_backbone("uniat:vit-6tok", image_size=(64, 32), model_name="vit_tiny_patch16_224", depth=1,
                   embed_dim=64, num_heads=2, gate="soft", patch_stride=8)


@pytest.mark.parametrize("kwargs, message", [
    ({"gate": "top2"}, "gate must be one of"),
    ({"model_name": "vit_nonexistent_xyz"}, "timm has no model"),
    ({"img_size": (64,)}, "img_size must be two positive integers"),
    ({"patch_stride": 0}, "patch_stride must be a positive integer"),
    ({"img_size": (8, 8)}, "smaller than the patch size"),
    ({"embed_dim": 64, "num_heads": 3}, "not divisible by num_heads"),
])
def test_bad_arguments_raise_atzoo_errors(kwargs, message):
    with pytest.raises(AtzooError, match=message):
        build_vit_6tok(**{**TINY, **kwargs})


def test_a_model_that_is_not_a_vision_transformer_is_refused():
    with pytest.raises(AtzooError, match="resnet18 is a ResNet; expected a VisionTransformer"):
        build_vit_6tok(model_name="resnet18")


def test_unfit_or_missing_weight_files_raise_naming_the_file(timm_file, tmp_path):
    path, _ = timm_file
    with pytest.raises(AtzooError, match=r"vit\.safetensors do not fit.*blocks\.2"):
        build_vit_6tok(**{**TINY, "depth": 3, "pretrained": str(path)})
    with pytest.raises(AtzooError, match="does not exist"):
        build_vit_6tok(**{**TINY, "pretrained": str(tmp_path / "missing.safetensors")})


def test_registering_the_backbones_imports_neither_torch_nor_timm():
    code = ("import sys, atzoo_uniat.plugin, atzoo_uniat.model as m; "
            "assert [b.name for b in m.BACKBONES] == ['vit-6tok', 'vit-1tok']; "
            "assert [b.num_outputs for b in m.BACKBONES] == [6, 1]; "
            "assert 'torch' not in sys.modules and 'timm' not in sys.modules, 'heavy import'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_everything_the_plugin_registers_conforms():
    from atzoo.testing import check_plugin

    report = check_plugin("uniat", image_size=(64, 32), backbone_kwargs={"vit-6tok": TINY, "vit-1tok": TINY})
    assert {entry["name"] for entry in report["backbones"]} == {"uniat:vit-6tok", "uniat:vit-1tok"}
    assert [entry["name"] for entry in report["losses"]] == ["uniat:said"]
    assert len(report["methods"]) == 6
