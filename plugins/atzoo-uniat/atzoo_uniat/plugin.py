"""atzoo entry point of the Uni-AT plugin: registers its backbones, losses and methods.

The item modules import torch and timm only inside their factories, so loading this plugin
stays cheap."""

from atzoo.plugin import hookimpl


@hookimpl
def atzoo_register_backbones(register):
    from atzoo_uniat.model import BACKBONES   # light: model.py imports torch/timm only inside factories
    for item in BACKBONES:
        register(item)


@hookimpl
def atzoo_register_losses(register):
    from atzoo_uniat.losses import LOSSES
    for item in LOSSES:
        register(item)


@hookimpl
def atzoo_register_methods(register):
    from atzoo_uniat.methods import METHODS
    for item in METHODS:
        register(item)
