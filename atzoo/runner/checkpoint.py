"""Checkpoints as safetensors (never pickles): model, loss modules and optimizer state, plus the
epoch reached, so a run resumes exactly where its last checkpoint left it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from atzoo.errors import AtzooError
from atzoo.formats.atomic import atomic_path
from atzoo.formats.checkpoint import CheckpointMeta, OptimizerState, checkpoint_metadata, parse_checkpoint_metadata


def _prefixed(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{key}": value.detach().contiguous().clone() for key, value in state.items()}


def _unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    start = len(prefix) + 1
    return {key[start:]: value for key, value in tensors.items() if key.startswith(prefix + ".")}


def _split_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{param_id}.{name}"] = value.detach().contiguous().clone()
            else:
                scalars.setdefault(str(param_id), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in _unprefixed("optimizer", tensors).items():
        param_id, name = key.split(".", 1)
        state.setdefault(int(param_id), {})[name] = value
    for param_id, values in meta["scalars"].items():
        state.setdefault(int(param_id), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(path: Path, *, model: torch.nn.Module, losses: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, epoch: int, step: int) -> None:
    """Write atomically: a crash during the write leaves the previous checkpoint intact."""
    optimizer_tensors, optimizer_meta = _split_optimizer_state(optimizer.state_dict())
    tensors = {**_prefixed("model", model.state_dict()), **_prefixed("losses", losses.state_dict()),
               **optimizer_tensors}
    metadata = checkpoint_metadata(CheckpointMeta(epoch=epoch, step=step,
                                                  optimizer=OptimizerState.model_validate(optimizer_meta)))
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def read_checkpoint_meta(path: Path) -> CheckpointMeta:
    """The checkpoint's header, checked (its tensors are not read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata()
    except (SafetensorError, OSError) as error:
        raise AtzooError(f"checkpoint {path} cannot be read ({error}); it is damaged") from None
    return parse_checkpoint_metadata(metadata, str(path))


def read_checkpoint_epoch(path: Path) -> int:
    return read_checkpoint_meta(path).epoch


def load_checkpoint(path: Path, *, model: torch.nn.Module, losses: torch.nn.Module,
                    optimizer: torch.optim.Optimizer) -> tuple[int, int]:
    """Restore the states in place (strict key match); return (epoch, step) reached."""
    meta = read_checkpoint_meta(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise AtzooError(f"checkpoint {path} cannot be read ({error}); it is damaged") from None
    model.load_state_dict(_unprefixed("model", tensors), strict=True)
    losses.load_state_dict(_unprefixed("losses", tensors), strict=True)
    optimizer.load_state_dict(_join_optimizer_state(tensors, meta.optimizer.model_dump()))
    return meta.epoch, meta.step
