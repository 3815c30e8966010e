"""The BoT recipes, built from atzoo's built-in timm backbone and losses (no model code of its own).

Published settings (Luo et al., "Bag of Tricks and A Strong Baseline for Deep Person
Re-identification", CVPRW 2019), every one a value of the recipe below:

- ResNet-50 with ImageNet weights (torchvision's, as the paper used: timm's ``resnet50.tv_in1k``),
  last stride 1, BNNeck (the feature after the BatchNorm is the test feature);
- cross entropy with label smoothing 0.1 on the classifier after the BNNeck; batch-hard triplet
  with margin 0.3 and center loss weighted 0.0005, both on the feature before the BNNeck;
- Adam, base lr 3.5e-4, weight decay 5e-4 on every parameter (biases and norms included);
  linear warm-up from 3.5e-5 (factor 0.1) over 10 epochs, lr x0.1 after epochs 40 and 70, 120
  epochs; the centres of the center loss have their own SGD at lr 0.5, stepped on the gradient of
  the unweighted center loss (the weight 0.0005 applies to the model's gradient only);
- 16 persons x 4 images per batch, 256x128 inputs, padding 10 + random crop, flip 0.5, random
  erasing with probability 0.5, area 0.02-0.4 of the image and aspect ratio 0.3-3.33.

``bot-no-center`` is the same recipe without the center loss (the paper's ablation).
"""

from __future__ import annotations

from typing import Any

from atzoo.plugin import LossTerm, Method, hookimpl

PAPER = "Luo et al., Bag of Tricks and A Strong Baseline for Deep Person Re-identification, CVPRW 2019"
TASK_FAMILY = "Tr-ReID"

BOT_TRAIN: dict[str, Any] = {
    "optimizer": "adam", "lr": 3.5e-4, "weight_decay": 5e-4, "no_weight_decay": [], "lr_multipliers": {},
    "grad_clip": None,
    "warmup_epochs": 10, "warmup_factor": 0.1, "schedule": "multistep", "milestones": [40, 70], "gamma": 0.1,
    "epochs": 120, "num_persons": 16, "num_instances": 4,
    "image_size": [256, 128], "pad": 10, "flip": 0.5,
    "erasing": 0.5, "erasing_scale": [0.02, 0.4], "erasing_ratio": [0.3, 1 / 0.3],
}
CENTER_OPTIMIZER = {"builtins:center": {"optimizer": "sgd", "lr": 0.5, "momentum": 0.0, "weight_decay": 0.0,
                                        "undo_loss_weight": True}}
CENTER_WEIGHT = 5e-4
BOT_BACKBONE = "builtins:timm"
BOT_BACKBONE_ARGS = {"model_name": "resnet50.tv_in1k", "pretrained": True, "last_stride_1": True}
BOT_LOSSES = (
    LossTerm("builtins:cross_entropy", weight=1.0, args={"epsilon": 0.1}),
    LossTerm("builtins:triplet", weight=1.0, args={"margin": 0.3, "soft_margin": False, "normalize": False}),
)


@hookimpl
def atzoo_register_methods(register) -> None:
    register(Method(
        name="bot", backbone=BOT_BACKBONE, backbone_args=dict(BOT_BACKBONE_ARGS),
        losses=(*BOT_LOSSES, LossTerm("builtins:center", weight=CENTER_WEIGHT)),
        heads=("person",), neck="bnneck", train={**BOT_TRAIN, "loss_optimizers": CENTER_OPTIMIZER},
        task_family=TASK_FAMILY, paper=PAPER,
        description="BoT as published: ImageNet ResNet-50 (last stride 1) + BNNeck, label-smoothed CE + "
                    "batch-hard triplet (0.3) + center loss (0.0005, centres by SGD lr 0.5), Adam 3.5e-4, "
                    "warm-up 10 epochs, x0.1 at 40 and 70, 120 epochs, 16x4, 256x128, erasing 0.5."))
    register(Method(
        name="bot-no-center", backbone=BOT_BACKBONE, backbone_args=dict(BOT_BACKBONE_ARGS),
        losses=BOT_LOSSES,
        heads=("person",), neck="bnneck", train=dict(BOT_TRAIN), task_family=TASK_FAMILY, paper=PAPER,
        description="BoT without the center loss: label-smoothed CE + batch-hard triplet only."))
