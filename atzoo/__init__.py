"""atzoo: model zoo and leaderboard for anytime person re-identification on AT-USTC.

The public Python API is loaded lazily (``import atzoo`` imports neither torch nor the plugins)::

    atzoo.list_methods()                          # ['baseline', 'bot', ...]
    atzoo.list_backbones("resnet*")               # shell wildcard, like timm.list_models
    backbone = atzoo.create_backbone("resnet50", pretrained=False)
    loss = atzoo.create_loss("triplet", context, margin=0.3)
    method = atzoo.get_method("baseline")
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "list_backbones": "atzoo.registry",
    "list_losses": "atzoo.registry",
    "list_methods": "atzoo.registry",
    "create_backbone": "atzoo.registry",
    "create_loss": "atzoo.registry",
    "get_method": "atzoo.registry",
    "load_registry": "atzoo.registry",
    "hookimpl": "atzoo.plugin",
    "load": "atzoo.hub",
    "create_model": "atzoo.zoo",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'atzoo' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
