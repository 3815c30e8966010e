"""Optimizer parameter groups, separate optimizers for a loss's own parameters, and the learning-rate
schedules (linear warm-up, then cosine, constant or multi-step)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from atzoo.config import LossOptimizer, TrainConfig

NamedParameters = Iterable[tuple[str, torch.nn.Parameter]]


def _lr_multiplier(name: str, multipliers: dict[str, float]) -> float:
    for pattern, factor in multipliers.items():
        if pattern in name:
            return factor
    return 1.0


def parameter_groups(named_parameters: NamedParameters, config: TrainConfig) -> list[dict]:
    """One group per (lr multiplier, weight decay) pair, in a deterministic order."""
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, parameter in named_parameters:
        if not parameter.requires_grad:
            continue
        decay = 0.0 if any(pattern in name for pattern in config.no_weight_decay) else config.weight_decay
        groups.setdefault((_lr_multiplier(name, config.lr_multipliers), decay), []).append(parameter)
    return [{"params": params, "lr_multiplier": mult, "weight_decay": decay, "lr": config.lr * mult}
            for (mult, decay), params in groups.items()]


def _torch_optimizer(kind: str, groups: list[dict], lr: float, momentum: float, nesterov: bool) -> torch.optim.Optimizer:
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0)
    if kind == "adam":
        return torch.optim.Adam(groups, lr=lr)
    return torch.optim.AdamW(groups, lr=lr)


class OptimizerSet:
    """Several optimizers stepped together, saved and restored as one state dict (parameter ids and
    groups concatenated in order), so checkpoints treat it like a single optimizer.

    Groups with ``fixed_lr`` keep their learning rate through the schedule; a group's ``grad_scale``
    multiplies its gradients just before its step."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]) -> None:
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [group for optimizer in self.optimizers for group in optimizer.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for group in self.param_groups:
            scale = group.get("grad_scale", 1.0)
            if scale != 1.0:
                for parameter in group["params"]:
                    if parameter.grad is not None:
                        parameter.grad.mul_(scale)
        for optimizer in self.optimizers:
            optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        state: dict[int, Any] = {}
        groups: list[dict[str, Any]] = []
        offset = 0
        for optimizer in self.optimizers:
            saved = optimizer.state_dict()
            state.update({int(key) + offset: value for key, value in saved["state"].items()})
            groups += [{**group, "params": [index + offset for index in group["params"]]}
                       for group in saved["param_groups"]]
            offset += sum(len(group["params"]) for group in optimizer.param_groups)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        if len(saved["param_groups"]) != len(self.param_groups):
            raise ValueError(f"the saved optimizer state has {len(saved['param_groups'])} parameter groups, "
                             f"this run has {len(self.param_groups)}")
        offset, first_group = 0, 0
        for optimizer in self.optimizers:
            count = sum(len(group["params"]) for group in optimizer.param_groups)
            groups = saved["param_groups"][first_group:first_group + len(optimizer.param_groups)]
            optimizer.load_state_dict({
                "state": {int(key) - offset: value for key, value in saved["state"].items()
                          if offset <= int(key) < offset + count},
                "param_groups": [{**group, "params": [index - offset for index in group["params"]]}
                                 for group in groups]})
            offset += count
            first_group += len(optimizer.param_groups)


def _loss_optimizer(parameters: list[torch.nn.Parameter], settings: LossOptimizer,
                    loss_weight: float) -> torch.optim.Optimizer:
    scale = 1.0 / loss_weight if settings.undo_loss_weight and loss_weight > 0 else 1.0
    group = {"params": parameters, "lr": settings.lr, "weight_decay": settings.weight_decay, "lr_multiplier": 1.0,
             "fixed_lr": True, "grad_scale": scale}
    return _torch_optimizer(settings.optimizer, [group], settings.lr, settings.momentum, nesterov=False)


def build_optimizer(named_parameters: NamedParameters, config: TrainConfig,
                    loss_parameters: dict[str, tuple[float, list[str]]] | None = None) -> Any:
    """The run's optimizer. ``loss_parameters`` maps a key of ``config.loss_optimizers`` to that loss
    term's weight and the names of its parameters: those get their own optimizer, the rest share the
    main one. Returns a torch optimizer, or an `OptimizerSet` when there are loss optimizers."""
    named = [(name, parameter) for name, parameter in named_parameters if parameter.requires_grad]
    separate: list[tuple[LossOptimizer, float, list[torch.nn.Parameter]]] = []
    taken: set[str] = set()
    for key, (weight, names) in (loss_parameters or {}).items():
        wanted = set(names) - taken
        parameters = [parameter for name, parameter in named if name in wanted]
        taken |= wanted
        if parameters:
            separate.append((config.loss_optimizers[key], weight, parameters))
    main = _torch_optimizer(config.optimizer, parameter_groups([(n, p) for n, p in named if n not in taken], config),
                            config.lr, config.momentum, config.nesterov)
    if not separate:
        return main
    return OptimizerSet([main, *(_loss_optimizer(params, settings, weight) for settings, weight, params in separate)])


def lr_factor(step: int, total_steps: int, warmup_steps: int, config: TrainConfig,
              steps_per_epoch: int | None = None) -> float:
    """Linear warm-up from `warmup_factor` to 1, times the schedule: cosine down to `min_lr_factor`,
    constant, or multistep (`gamma` per milestone reached; milestones count epochs, which needs
    `steps_per_epoch`)."""
    warmup = 1.0
    if step < warmup_steps:
        warmup = config.warmup_factor + (1.0 - config.warmup_factor) * step / warmup_steps
    if config.schedule == "multistep":
        epoch = step // max(1, steps_per_epoch or 1)
        return warmup * config.gamma ** sum(epoch >= milestone for milestone in config.milestones)
    if step < warmup_steps:
        return warmup
    if config.schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return config.min_lr_factor + (1.0 - config.min_lr_factor) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def set_learning_rate(optimizer: Any, base_lr: float, factor: float) -> None:
    for group in optimizer.param_groups:
        if not group.get("fixed_lr"):
            group["lr"] = base_lr * group["lr_multiplier"] * factor
