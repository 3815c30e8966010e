"""MoAE, the mixture of attribute experts: the class tokens' replacement for a block's MLP.

Every block owns five attribute experts (``visible``, ``infrared``, ``cross``, ``same``,
``change``), each an input layer ``fc1`` and an output layer ``fc2`` copied from the block's MLP.
Scenario (m, c) may take two paths (`allowed_paths`): path 0 "m->c" = ``fc2_c(act(fc1_m(x)))``,
path 1 "c->m" = ``fc2_m(act(fc1_c(x)))``. Each scenario token has its own gate per block
(`ScenarioGates`), a ``Linear(D, 2)`` scoring the two paths:

- ``top1`` (published): the token takes the higher-scoring path, unscaled, so the gate gets no
  gradient and the routing stays what it was at initialisation;
- ``soft``: the softmax-weighted mix of both paths, so the gate is learned.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from atzoo_uniat.scenarios import ATTRIBUTES, allowed_paths



def copy_linear(layer: nn.Module) -> nn.Module:
    """A deep copy of ``layer`` whose parameters own their storage."""
    clone = copy.deepcopy(layer)
    with torch.no_grad():
        for parameter in clone.parameters():
            parameter.data = parameter.data.clone()
    return clone


class AttributeExpert(nn.Module):
    """One attribute's input (fc1) and output (fc2) MLP layers, copied from a block's MLP."""

    def __init__(self, mlp: nn.Module) -> None:
        super().__init__()
        self.fc1 = copy_linear(mlp.fc1)
        self.fc2 = copy_linear(mlp.fc2)


class ScenarioGates(nn.ModuleList):
    """One ``Linear(D, 2)`` per scenario token, scoring its two expert paths."""

    def __init__(self, dim: int, num_tokens: int, kind: str) -> None:
        super().__init__(nn.Linear(dim, 2) for _ in range(num_tokens))
        self.kind = kind

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T, 2): each token's score for each of its paths."""
        return torch.stack([gate(tokens[:, t]) for t, gate in enumerate(self)], dim=1)

    def path_weights(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T, 2): one-hot for top1 (no gradient), softmax for soft."""
        if self.kind == "top1":
            with torch.no_grad():
                choice = self.logits(tokens).argmax(dim=-1)
            return nn.functional.one_hot(choice, 2).to(tokens.dtype)
        return self.logits(tokens).softmax(dim=-1)


class MixtureOfAttributeExperts(nn.Module):
    """The scenario tokens' MLP in one block: each token mixes its two allowed expert paths."""

    def __init__(self, mlp: nn.Module, gate: str, num_tokens: int) -> None:
        super().__init__()
        self.gate_kind = gate
        self.experts = nn.ModuleDict({name: AttributeExpert(mlp) for name in ATTRIBUTES})
        self.gates = ScenarioGates(mlp.fc1.in_features, num_tokens, gate)
        self.act = copy.deepcopy(mlp.act)
        self.drop1 = copy.deepcopy(mlp.drop1)
        self.drop2 = copy.deepcopy(mlp.drop2)
        self.last_weights: torch.Tensor | None = None

    def path(self, x: torch.Tensor, first: str, second: str) -> torch.Tensor:
        """``fc2_second(act(fc1_first(x)))``."""
        hidden = self.drop1(self.act(self.experts[first].fc1(x)))
        return self.drop2(self.experts[second].fc2(hidden))

    def gate_weights(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.gates.path_weights(tokens)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        weights = self.gate_weights(tokens)
        self.last_weights = weights.detach()
        outputs = []
        for index in range(tokens.shape[1]):
            token = tokens[:, index]
            path0, path1 = (self.path(token, a, b) for a, b in allowed_paths(index))
            outputs.append(weights[:, index, 0:1] * path0 + weights[:, index, 1:2] * path1)
        return torch.stack(outputs, dim=1)
