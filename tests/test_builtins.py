"""Built-in backbones, losses and the baseline method: conformance and hand-checked values."""

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from atzoo.errors import AtzooError
from atzoo.losses import CenterLoss, CrossEntropyLabelSmooth, TripletLoss
from atzoo.plugin import LossContext
from atzoo.registry import create_backbone, load_registry
from atzoo.testing import check_backbone, check_loss, check_method

CONTEXT = LossContext(num_persons=3, num_clothes=5, embed_dim=2, num_heads=2)


@pytest.mark.parametrize("name, image_size, kwargs", [
    ("tiny_cnn", None, {}),
    ("tiny_cnn", (32, 16), {}),
    ("resnet18", (64, 32), {}),
    ("timm", (64, 32), {"model_name": "resnet10t"}),
    ("timm", (64, 32), {"model_name": "mobilenetv3_small_050"}),
])
def test_builtin_backbones_conform(name, image_size, kwargs):
    summary = check_backbone(name, image_size=image_size, **kwargs)
    assert summary["output_shape"][0] == 2


def test_tiny_cnn_embed_dim_follows_its_argument():
    assert check_backbone("tiny_cnn", image_size=(32, 16), embed_dim=48)["embed_dim"] == 48


@pytest.mark.parametrize("model_name", ["resnet18", "resnet10t"])
def test_last_stride_1_halves_the_total_stride(model_name):
    images = torch.randn(1, 3, 64, 32)
    strided = create_backbone("timm", model_name=model_name, last_stride_1=False).eval()
    unstrided = create_backbone("timm", model_name=model_name, last_stride_1=True).eval()
    with torch.no_grad():
        assert strided.model.forward_features(images).shape[-2:] == (2, 1)
        assert unstrided.model.forward_features(images).shape[-2:] == (4, 2)


def test_an_unknown_timm_model_is_refused_with_suggestions():
    with pytest.raises(AtzooError, match="timm has no model 'resnet5'.*resnet50"):
        create_backbone("timm", model_name="resnet5")


def test_local_pretrained_weights_load_without_the_classifier(tmp_path):
    import timm

    torch.manual_seed(3)
    reference = timm.create_model("resnet10t", num_classes=7).eval()
    path = tmp_path / "resnet10t.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    backbone = create_backbone("timm", model_name="resnet10t", pretrained=str(path), last_stride_1=False).eval()
    images = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        assert torch.allclose(backbone(images), reference.forward_head(reference.forward_features(images),
                                                                       pre_logits=True), atol=1e-5)


def test_local_pretrained_weights_of_another_model_or_missing_are_refused(tmp_path):
    import timm

    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in timm.create_model("resnet18").state_dict().items()}, str(path))
    with pytest.raises(AtzooError, match="resnet18.safetensors do not fit"):
        create_backbone("timm", model_name="resnet10t", pretrained=str(path))
    with pytest.raises(AtzooError, match="does not exist"):
        create_backbone("timm", model_name="resnet10t", pretrained=str(tmp_path / "absent.safetensors"))


@pytest.mark.parametrize("name", ["cross_entropy", "triplet", "center"])
def test_builtin_losses_conform(name):
    check_loss(name)


def test_cross_entropy_with_label_smoothing_matches_the_formula():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    target = torch.tensor([0, 1])
    eps, k = 0.1, 3
    log_p = F.log_softmax(logits, dim=1)
    smoothed = torch.full((2, k), eps / k)
    smoothed[torch.arange(2), target] += 1 - eps
    expected = -(smoothed * log_p).sum(1).mean()
    assert torch.allclose(CrossEntropyLabelSmooth(CONTEXT, epsilon=eps)(logits=logits, target=target), expected)
    assert torch.allclose(CrossEntropyLabelSmooth(CONTEXT, epsilon=0.0)(logits, target), F.cross_entropy(logits, target))
    with pytest.raises(AtzooError, match="epsilon"):
        CrossEntropyLabelSmooth(CONTEXT, epsilon=1.5)


def test_batch_hard_triplet_on_four_points_by_hand():
    # persons 0 at x=0 and x=3, person 1 at x=1 and x=5 (on a line): hardest positive / nearest negative
    features = torch.tensor([[0.0, 0.0], [3.0, 0.0], [1.0, 0.0], [5.0, 0.0]])
    target = torch.tensor([0, 0, 1, 1])
    # anchor 0: ap=3, an=1 -> 3-1+0.3 = 2.3; anchor 1: ap=3, an=min(2,2)=2 -> 1.3
    # anchor 2: ap=4, an=min(1,2)=1 -> 3.3;   anchor 3: ap=4, an=min(5,2)=2 -> 2.3
    expected = (2.3 + 1.3 + 3.3 + 2.3) / 4
    assert math.isclose(float(TripletLoss(CONTEXT, margin=0.3)(features=features, target=target)), expected, rel_tol=1e-5)
    soft = sum(math.log1p(math.exp(d)) for d in (2.0, 1.0, 3.0, 2.0)) / 4
    assert math.isclose(float(TripletLoss(CONTEXT, soft_margin=True)(features, target)), soft, rel_tol=1e-5)


def test_triplet_is_zero_when_negatives_are_far_and_when_there_are_none():
    far = torch.tensor([[0.0, 0.0], [0.1, 0.0], [10.0, 0.0], [10.1, 0.0]])
    assert float(TripletLoss(CONTEXT)(far, torch.tensor([0, 0, 1, 1]))) == 0.0
    assert float(TripletLoss(CONTEXT)(far, torch.tensor([0, 0, 0, 0]))) == 0.0


def test_center_loss_is_the_mean_squared_distance_to_the_head_centres():
    module = CenterLoss(CONTEXT)
    assert module.centers.shape == (2, 5, 2)
    with torch.no_grad():
        module.centers.zero_()
        module.centers[1, 2] = torch.tensor([1.0, 1.0])
    features = torch.tensor([[1.0, 2.0], [4.0, 1.0]])
    target = torch.tensor([2, 0])
    with torch.no_grad():
        assert math.isclose(float(module(features=features, target=target, head=1)), (1.0 + 17.0) / 2, rel_tol=1e-6)
        assert math.isclose(float(module(features, target, head=0)), (5.0 + 17.0) / 2, rel_tol=1e-6)


def test_baseline_recipe_conforms_and_trains_one_step():
    summary = check_method("baseline", build=True, image_size=(32, 16))
    assert summary["losses"] == ["builtins:cross_entropy", "builtins:triplet"]
    assert math.isfinite(summary["loss"]) and summary["loss"] > 0


def test_baseline_is_sized_for_a_cpu_quickstart():
    method = load_registry().get("methods", "baseline").item
    assert method.backbone == "builtins:tiny_cnn" and method.neck == "bnneck" and method.heads == ("person",)
    assert method.train["image_size"] == [128, 64]
    assert method.train["num_instances"] >= 2
    assert method.train["epochs"] * method.train["iters_per_epoch"] * method.train["num_persons"] * \
        method.train["num_instances"] <= 64_000
