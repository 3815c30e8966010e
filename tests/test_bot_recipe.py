"""BoT exactly as published (Luo et al., CVPRW 2019): every value checked against the recipe the
runner resolves, and against the optimizer and schedule the runner builds from it."""

import pytest
import torch

from atzoo.registry import load_registry
from atzoo.runner.optim import build_optimizer, lr_factor, set_learning_rate
from atzoo.runner.recipe import build_model, loss_context, resolve_recipe


@pytest.fixture(scope="module")
def recipe():
    return resolve_recipe("bot:bot", {}, load_registry())


def test_backbone_is_imagenet_resnet50_with_last_stride_1_and_bnneck(recipe):
    assert recipe.backbone.qualified_name == "builtins:timm"
    assert recipe.backbone_args == {"model_name": "resnet50.tv_in1k", "pretrained": True, "last_stride_1": True}
    assert (recipe.embed_dim, recipe.num_outputs, recipe.heads, recipe.neck) == (2048, 1, ("person",), "bnneck")


def test_losses_label_smoothing_triplet_margin_and_center_weight(recipe):
    losses = {term["loss"]: term for term in recipe.losses}
    assert list(losses) == ["builtins:cross_entropy", "builtins:triplet", "builtins:center"]
    assert losses["builtins:cross_entropy"]["weight"] == 1.0 and losses["builtins:cross_entropy"]["args"] == {"epsilon": 0.1}
    assert losses["builtins:triplet"]["weight"] == 1.0
    assert losses["builtins:triplet"]["args"] == {"margin": 0.3, "soft_margin": False, "normalize": False}
    assert losses["builtins:center"]["weight"] == 0.0005


def test_optimizer_schedule_batches_and_augmentation(recipe):
    train = recipe.train
    assert (train.optimizer, train.lr, train.weight_decay, train.no_weight_decay) == ("adam", 3.5e-4, 5e-4, ())
    assert train.lr_multipliers == {} and train.grad_clip is None
    assert (train.warmup_epochs, train.warmup_factor * train.lr) == (10, pytest.approx(3.5e-5))
    assert (train.schedule, train.milestones, train.gamma, train.epochs) == ("multistep", (40, 70), 0.1, 120)
    assert (train.num_persons, train.num_instances, train.image_size) == (16, 4, (256, 128))
    assert (train.pad, train.flip, train.erasing) == (10, 0.5, 0.5)
    assert train.erasing_scale == (0.02, 0.4) and train.erasing_ratio == pytest.approx((0.3, 1 / 0.3))
    center = train.loss_optimizers["builtins:center"]
    assert (center.optimizer, center.lr, center.momentum, center.weight_decay, center.undo_loss_weight) == \
        ("sgd", 0.5, 0.0, 0.0, True)


def test_learning_rate_per_epoch_is_the_papers(recipe):
    """3.5e-5 x epoch for the first 10 epochs (linear), 3.5e-4 until 40, 3.5e-5 until 70, 3.5e-6 after."""
    train, steps = recipe.train, 10
    lr = [train.lr * lr_factor(epoch * steps, train.epochs * steps, train.warmup_epochs * steps, train, steps)
          for epoch in range(train.epochs)]
    assert lr[0] == pytest.approx(3.5e-5) and lr[5] == pytest.approx(3.5e-5 + 0.5 * (3.5e-4 - 3.5e-5))
    assert lr[10] == pytest.approx(3.5e-4) and lr[39] == pytest.approx(3.5e-4)
    assert lr[40] == pytest.approx(3.5e-5) and lr[69] == pytest.approx(3.5e-5)
    assert lr[70] == pytest.approx(3.5e-6) and lr[119] == pytest.approx(3.5e-6)


def test_the_runner_builds_adam_for_the_model_and_sgd_for_the_centres():
    from atzoo.runner.objective import Objective
    from atzoo.runner.trainer import _loss_parameters

    registry = load_registry()
    recipe = resolve_recipe("bot:bot", {"backbone.pretrained": False}, registry)
    model = build_model(recipe, 5, 7, registry)
    objective = Objective(list(recipe.losses), registry, loss_context(recipe, model, 5, 7), recipe.heads)
    optimizer = build_optimizer([*model.named_parameters(), *objective.named_parameters(prefix="losses")],
                                recipe.train, _loss_parameters(recipe, objective))
    adam, sgd = optimizer.optimizers
    assert isinstance(adam, torch.optim.Adam) and isinstance(sgd, torch.optim.SGD)
    assert all(group["weight_decay"] == 5e-4 for group in adam.param_groups)
    assert sgd.param_groups[0]["params"] == [objective.modules_[2].centers]
    set_learning_rate(optimizer, recipe.train.lr, 0.1)
    assert sgd.param_groups[0]["lr"] == 0.5 and sgd.param_groups[0]["grad_scale"] == pytest.approx(2000.0)
    assert adam.param_groups[0]["lr"] == pytest.approx(3.5e-5)
