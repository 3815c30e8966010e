"""The BoT recipes, built from atzoo's built-in ResNet-50 and losses (no model code of its own).

Published settings (Luo et al., "Bag of Tricks and A Strong Baseline for Deep Person
Re-identification", CVPRW 2019): ImageNet-pretrained ResNet-50 with last stride 1, BNNeck,
256x128 inputs, padding 10 + random crop, flip 0.5, random erasing 0.5, P=16 x K=4 batches, Adam
with base lr 3.5e-4 and weight decay 5e-4, linear warm-up from 3.5e-5 over 10 epochs, 120 epochs,
cross entropy with label smoothing 0.1, batch-hard triplet with margin 0.3 on the pre-BNNeck
features, and a center loss weighted 0.0005 (``bot-no-center`` leaves it out).

Two differences from the paper, both imposed by the shared runner: the learning rate follows a
cosine decay (the paper divides it by 10 at epochs 40 and 70), and the centres of the center
loss are trained by the same optimizer as the model (the paper uses SGD with lr 0.5 for them).
"""

from __future__ import annotations

from atzoo.plugin import LossTerm, Method, hookimpl

PAPER = "Luo et al., Bag of Tricks and A Strong Baseline for Deep Person Re-identification, CVPRW 2019"

BOT_TRAIN = {
    "optimizer": "adam", "lr": 3.5e-4, "weight_decay": 5e-4,
    "warmup_epochs": 10, "warmup_factor": 0.1, "epochs": 120, "schedule": "cosine",
    "num_persons": 16, "num_instances": 4,
    "image_size": [256, 128], "pad": 10, "flip": 0.5, "erasing": 0.5,
}
BOT_BACKBONE_ARGS = {"pretrained": True, "last_stride_1": True}
BOT_LOSSES = (
    LossTerm("builtins:cross_entropy", weight=1.0, args={"epsilon": 0.1}),
    LossTerm("builtins:triplet", weight=1.0, args={"margin": 0.3}),
)


@hookimpl
def atzoo_register_methods(register) -> None:
    register(Method(
        name="bot", backbone="builtins:resnet50", backbone_args=dict(BOT_BACKBONE_ARGS),
        losses=(*BOT_LOSSES, LossTerm("builtins:center", weight=5e-4)),
        heads=("person",), neck="bnneck", train=dict(BOT_TRAIN), task_family="bag-of-tricks", paper=PAPER,
        description="BoT: ImageNet ResNet-50 (last stride 1) + BNNeck, label-smoothed CE + batch-hard "
                    "triplet + center loss (0.0005), Adam 3.5e-4, 10 warm-up epochs, 120 epochs, 16x4, "
                    "256x128, erasing 0.5."))
    register(Method(
        name="bot-no-center", backbone="builtins:resnet50", backbone_args=dict(BOT_BACKBONE_ARGS),
        losses=BOT_LOSSES,
        heads=("person",), neck="bnneck", train=dict(BOT_TRAIN), task_family="bag-of-tricks", paper=PAPER,
        description="BoT without the center loss: label-smoothed CE + batch-hard triplet only."))
