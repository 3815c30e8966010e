"""Built-in backbones: a tiny CNN for CPU runs and tests, and any timm model.

Imported only when a built-in backbone is built (see `atzoo.builtins`), never by ``atzoo list``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from collections.abc import Callable

import torch
from torch import nn

from atzoo.errors import AtzooError


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class TinyCNN(nn.Module):
    """Four conv-bn-relu stages (three downsample by 2), pooled over ``stripes`` horizontal bands
    and projected to ``embed_dim``.

    The bands keep where a colour is on the body (head, torso, legs), which one global average
    throws away; that is what lets so small a network separate people on two CPU cores at 128x64.
    Valid for any input of at least 8x8 pixels.
    """

    def __init__(self, embed_dim: int = 128, width: int = 32, stripes: int = 4) -> None:
        super().__init__()
        if embed_dim < 1 or width < 1 or stripes < 1:
            raise AtzooError(f"tiny_cnn needs positive embed_dim, width and stripes, got {embed_dim}, {width}, "
                             f"{stripes}")
        self.embed_dim = embed_dim
        self.features = nn.Sequential(
            _conv_bn_relu(3, width, 2),
            _conv_bn_relu(width, width * 2, 2),
            _conv_bn_relu(width * 2, width * 4, 2),
            _conv_bn_relu(width * 4, width * 4, 1),
        )
        self.pool = nn.AdaptiveAvgPool2d((stripes, 1))
        self.project = nn.Linear(width * 4 * stripes, embed_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.project(self.pool(self.features(images)).flatten(1))


def tiny_cnn(embed_dim: int = 128, width: int = 32, stripes: int = 4) -> TinyCNN:
    return TinyCNN(embed_dim=embed_dim, width=width, stripes=stripes)


class TimmBackbone(nn.Module):
    """A timm model without its classifier, globally pooled to ``embed_dim`` features."""

    def __init__(self, model: nn.Module, model_name: str) -> None:
        super().__init__()
        self.model = model
        self.model_name = model_name
        self.embed_dim = int(getattr(model, "head_hidden_size", None) or getattr(model, "num_features"))  # noqa: B009

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)


def _replace_module(root: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def set_last_stride_1(model: nn.Module) -> bool:
    """Remove the downsampling of the model's last stage (Luo et al. 2019), where it has one.

    The last stage is the last entry of timm's ``feature_info``; its stride-2 convolutions become
    stride 1 and its stride-2 average pools (``avg_down`` shortcuts) are dropped. Returns whether
    anything changed (nothing does for, e.g., a ViT).
    """
    feature_info = getattr(model, "feature_info", None)
    if not feature_info:
        return False
    stage_name = feature_info[-1].get("module") if isinstance(feature_info[-1], dict) else None
    if not stage_name:
        return False
    try:
        stage = model.get_submodule(stage_name)
    except AttributeError:
        return False
    changed = False
    pools = []
    for name, module in stage.named_modules():
        if isinstance(module, nn.Conv2d) and tuple(module.stride) == (2, 2):
            module.stride = (1, 1)
            changed = True
        elif isinstance(module, nn.AvgPool2d) and module.stride in (2, (2, 2)):
            pools.append(name)
    for name in pools:
        _replace_module(stage, name, nn.Identity())
        changed = True
    return changed


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    classifier = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or ()
    names = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    return tuple(f"{name}." for name in names) + ("fc.", "head.fc.", "classifier.", "head.")


def load_local_weights(model: nn.Module, path: Path, *,
                       convert: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None) -> None:
    """Load a .safetensors state dict strictly, after dropping the classifier's tensors.

    ``convert`` adapts the file's state dict first (timm's checkpoint filters, say)."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise AtzooError(f"pretrained weights file {path} does not exist")
    if path.suffix != ".safetensors":
        raise AtzooError(f"pretrained weights {path} must be a .safetensors file")
    try:
        state = load_file(str(path))
    except Exception as error:  # noqa: BLE001 - safetensors raises several kinds
        raise AtzooError(f"cannot read pretrained weights {path}: {error}") from None
    if convert is not None:
        state = convert(state)
    own = model.state_dict()
    prefixes = _classifier_prefixes(model)
    state = {k: v for k, v in state.items() if k in own or not k.startswith(prefixes)}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or mismatched:
        def head(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (" ..." if len(keys) > 5 else "")
        raise AtzooError(f"pretrained weights {path} do not fit {getattr(model, 'default_cfg', {}).get('architecture', 'the model')}: "
                         f"missing [{head(missing)}], unexpected [{head(unexpected)}], "
                         f"wrong shape [{head(mismatched)}]")
    model.load_state_dict(state, strict=True)


def check_timm_model_name(model_name: str) -> None:
    """An unknown timm model name is an error that suggests similar names."""
    import timm

    if not isinstance(model_name, str) or not timm.is_model(model_name):
        close = timm.list_models(f"*{model_name}*")[:5] if isinstance(model_name, str) else []
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise AtzooError(f"timm has no model {model_name!r}{hint}")


def hub_weights_name(model_name: str) -> str:
    """The Hugging Face Hub repository timm downloads ``model_name``'s pretrained weights from."""
    from timm.models import get_pretrained_cfg

    config = get_pretrained_cfg(model_name)
    return getattr(config, "hf_hub_id", None) or f"timm's {model_name} weights"


def missing_pretrained_weights_error(model_name: str, cause: BaseException) -> AtzooError:
    """One message for pretrained weights that cannot be had: what is missing and the ways out."""
    weights = hub_weights_name(model_name)
    return AtzooError(
        f"the ImageNet-pretrained weights of timm model {model_name} ({weights} on the Hugging Face Hub) are not "
        f"in the local Hub cache and cannot be downloaded ({type(cause).__name__}: {cause}). Ways out: "
        f"(1) a local .safetensors file of {model_name}: --set pretrained=PATH (in Python pretrained='PATH'); "
        f"(2) fill the Hub cache on a machine with the network (`huggingface-cli download {weights}`) and copy "
        f"it here (HF_HUB_CACHE, by default ~/.cache/huggingface/hub); "
        f"(3) --set pretrained=false to train from random weights (a smoke test, far below published numbers)")


def create_timm_model(model_name: str, from_hub: bool, **timm_kwargs: Any) -> nn.Module:
    """``timm.create_model`` without its classifier, with the user's mistakes (an unknown name, a
    rejected argument, weights that cannot be fetched) as clear errors. Local weights are loaded
    by the caller (`load_local_weights`)."""
    import timm

    check_timm_model_name(model_name)
    try:
        return timm.create_model(model_name, pretrained=from_hub, num_classes=0, **timm_kwargs)
    except TypeError as error:
        raise AtzooError(f"timm model {model_name} rejected the arguments {sorted(timm_kwargs)}: {error}") from None
    except Exception as error:  # noqa: BLE001 - the Hub client and its HTTP stack raise many kinds
        if not from_hub:
            raise
        raise missing_pretrained_weights_error(model_name, error) from None


def timm_backbone(model_name: str = "resnet50", pretrained: bool | str = False, last_stride_1: bool = True,
                  **timm_kwargs: Any) -> TimmBackbone:
    """Any timm model as a backbone.

    ``pretrained``: ``False``; ``True`` for timm's published weights (downloaded from the hub);
    or a path to a local ``.safetensors`` state dict for this architecture. Extra keyword arguments
    go to ``timm.create_model`` (``drop_path_rate=0.1``, say).
    """
    model = create_timm_model(model_name, pretrained is True, **timm_kwargs)
    if isinstance(pretrained, (str, os.PathLike)):
        load_local_weights(model, Path(pretrained))
    if last_stride_1:
        set_last_stride_1(model)
    return TimmBackbone(model, model_name)


def resnet18(pretrained: bool | str = False, last_stride_1: bool = True, **timm_kwargs: Any) -> TimmBackbone:
    return timm_backbone("resnet18", pretrained=pretrained, last_stride_1=last_stride_1, **timm_kwargs)


def resnet50(pretrained: bool | str = False, last_stride_1: bool = True, **timm_kwargs: Any) -> TimmBackbone:
    return timm_backbone("resnet50", pretrained=pretrained, last_stride_1=last_stride_1, **timm_kwargs)
