"""Optimizer parameter groups and the warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from atzoo.config import TrainConfig


def _lr_multiplier(name: str, multipliers: dict[str, float]) -> float:
    for pattern, factor in multipliers.items():
        if pattern in name:
            return factor
    return 1.0


def parameter_groups(named_parameters: Iterable[tuple[str, torch.nn.Parameter]],
                     config: TrainConfig) -> list[dict[str, Any]]:
    """One group per (lr multiplier, weight decay) pair, in a deterministic order."""
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, parameter in named_parameters:
        if not parameter.requires_grad:
            continue
        decay = 0.0 if any(pattern in name for pattern in config.no_weight_decay) else config.weight_decay
        groups.setdefault((_lr_multiplier(name, config.lr_multipliers), decay), []).append(parameter)
    return [{"params": params, "lr_multiplier": mult, "weight_decay": decay, "lr": config.lr * mult}
            for (mult, decay), params in groups.items()]


def build_optimizer(named_parameters: Iterable[tuple[str, torch.nn.Parameter]],
                    config: TrainConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(named_parameters, config)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr)
    return torch.optim.AdamW(groups, lr=config.lr)


def lr_factor(step: int, total_steps: int, warmup_steps: int, config: TrainConfig) -> float:
    """Linear warm-up from `warmup_factor` to 1, then cosine (or constant) down to `min_lr_factor`."""
    if step < warmup_steps:
        return config.warmup_factor + (1.0 - config.warmup_factor) * step / warmup_steps
    if config.schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return config.min_lr_factor + (1.0 - config.min_lr_factor) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def set_learning_rate(optimizer: torch.optim.Optimizer, base_lr: float, factor: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = base_lr * group["lr_multiplier"] * factor
