"""Records data/reference_before_restructure.safetensors (run from the repository root); it was run with
the single-module model code before the Uni-AT parts became their own modules."""

import torch
from safetensors.torch import save_file
from atzoo_uniat.model import build_vit_6tok
from atzoo_uniat.losses import build_said
from atzoo.plugin import LossContext

TINY = {"model_name": "vit_tiny_patch16_224", "depth": 2, "embed_dim": 16, "num_heads": 2,
        "img_size": (32, 16), "drop_path_rate": 0.0}
out = {}
for gate in ("top1", "soft"):
    torch.manual_seed(0)
    model = build_vit_6tok(**TINY, gate=gate).eval()
    torch.manual_seed(1)
    images = torch.randn(4, 3, 32, 16)
    with torch.no_grad():
        feats = model(images)
    for k, v in model.state_dict().items():
        if f"state.{k}" in out:
            assert torch.equal(out[f"state.{k}"], v)
        out[f"state.{k}"] = v.contiguous()
    out[f"{gate}.images"] = images
    out[f"{gate}.output"] = feats
    out[f"{gate}.gates"] = model.last_gate_weights
generator = torch.Generator().manual_seed(5)
person = torch.tensor([0, 0, 1, 1, 2, 2])
clothes = torch.tensor([0, 1, 2, 2, 4, 5])
modality = torch.tensor([1, 2, 1, 2, 1, 1])
c2p = torch.tensor([0, 0, 1, 1, 2, 2])
logits = [torch.randn(6, 6 if h % 2 == 0 else 3, generator=generator) for h in range(6)]
for i, l in enumerate(logits):
    out[f"loss.logits.{i}"] = l
out["loss.person"], out["loss.clothes"], out["loss.modality"], out["loss.c2p"] = person, clothes, modality, c2p
ctx = LossContext(num_persons=3, num_clothes=6, embed_dim=8, num_heads=6)
for hdw in (False, True):
    for eps in (0.0, 0.1):
        loss = build_said(ctx, hdw=hdw, epsilon=eps)
        value = loss(logits, person, clothes, modality, c2p)
        out[f"loss.value.hdw{int(hdw)}.eps{eps}"] = value.reshape(1)
        out[f"loss.weights.hdw{int(hdw)}.eps{eps}"] = loss.last_weights
save_file({k: v.contiguous().clone() for k, v in out.items()}, "plugins/atzoo-uniat/tests/data/reference_before_restructure.safetensors")
