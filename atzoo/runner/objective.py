"""The weighted sum of a method's losses, fed with exactly what each loss says it consumes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from atzoo.plugin import LossContext

if TYPE_CHECKING:
    from atzoo.registry import Registry


def _is_batch_level(consumes: tuple[str, ...]) -> bool:
    return any(name.startswith("all_") for name in consumes)


class Objective(nn.Module):
    """Holds the loss modules (their parameters train with the model) and combines them."""

    def __init__(self, terms: Sequence[Mapping[str, Any]], registry: Registry, context: LossContext,
                 heads: tuple[str, ...]) -> None:
        super().__init__()
        self.terms = terms
        self.heads = heads
        self.specs = [registry.get("losses", term["loss"]).item for term in terms]
        self.modules_ = nn.ModuleList(spec.factory(context, **term["args"]) for spec, term in zip(self.specs, terms))

    def _head_indices(self, term: Mapping[str, Any]) -> list[int]:
        return list(range(len(self.heads))) if term["heads"] == "each" else list(term["heads"])

    def forward(self, outputs: dict[str, Any], batch: dict[str, torch.Tensor],
                clothes_to_person: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        shared = {
            "person": batch["person"], "clothes": batch["clothes"], "modality": batch["modality"],
            "camera": batch["camera"], "clothes_to_person": clothes_to_person,
            "all_features": outputs["features"], "all_embeddings": outputs["embeddings"],
            "all_logits": outputs["logits"],
        }
        total = outputs["features"].new_zeros(())
        parts: dict[str, float] = {}
        for term, spec, module in zip(self.terms, self.specs, self.modules_):
            if _is_batch_level(spec.consumes):
                value = module(**{name: shared[name] for name in spec.consumes})
            else:
                values = []
                for head in self._head_indices(term):
                    inputs = {**shared, "features": outputs["features"][:, head],
                              "embeddings": outputs["embeddings"][:, head], "logits": outputs["logits"][head],
                              "target": batch[self.heads[head]], "head": head}
                    values.append(module(**{name: inputs[name] for name in spec.consumes}))
                value = torch.stack(values).mean()
            total = total + term["weight"] * value
            parts[term["loss"]] = parts.get(term["loss"], 0.0) + float(value.detach())
        return total, parts
