"""The atzoo plugin contract: everything a plugin author needs, in one file.

A plugin is a pip-installable package that declares an entry point in the ``atzoo`` group::

    [project.entry-points.atzoo]
    mymethod = "atzoo_mymethod.plugin"

and implements one or more of the hooks below in that module with ``@atzoo.plugin.hookimpl``.
Each hook receives a ``register`` callback built by the host. Call it once per item with one of
the item classes defined here (``Backbone``, ``Loss``, ``MethodRecipe``, ``PretrainedWeights``). The host
validates every item, records which distribution and version supplied it, and makes it reachable
as ``PLUGIN:NAME`` (``PLUGIN`` is the entry point's name) and, when no other plugin uses the same
short name, as ``NAME``. Nothing is ever overwritten: registering a name twice in one plugin is
an error; the same short name in two plugins makes the short name ambiguous (the qualified names
keep working).

Keep the plugin module light: import torch, timm or your model code *inside* the factories, so
that ``atzoo --help`` and ``atzoo list`` stay fast however many plugins are installed.

Hooks only ever gain optional arguments, so a plugin written against this version keeps working.

Example::

    from atzoo.plugin import Backbone, LossTerm, MethodRecipe, hookimpl

    def build_tiny(embed_dim=128):
        import torch.nn as nn          # heavy imports inside the factory
        return nn.Sequential(nn.Conv2d(3, embed_dim, 3, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    @hookimpl
    def atzoo_register_backbones(register):
        register(Backbone(name="tiny", factory=build_tiny, embed_dim=128,
                          defaults={"embed_dim": 128}))

    @hookimpl
    def atzoo_register_methods(register):
        register(MethodRecipe(name="tiny-ce", backbone="tiny",
                        losses=(LossTerm("cross_entropy"),),
                        train={"epochs": 2, "lr": 0.01}))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from collections.abc import Callable

import pluggy

from atzoo.protocol import TASK_FAMILIES

__all__ = ["PROJECT", "TASK_FAMILIES", "hookspec", "hookimpl", "LOSS_INPUTS", "HEAD_TARGETS", "Backbone",
           "LossContext", "Loss", "LossTerm", "MethodRecipe", "Method", "PretrainedWeights", "AtzooHookSpecs",
           "IMAGENET_NORMALIZATION"]

PROJECT = "atzoo"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

ImageNormalization = tuple[tuple[float, float, float], tuple[float, float, float]]
IMAGENET_NORMALIZATION: ImageNormalization = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

LOSS_INPUTS = (
    "features", "embeddings", "logits", "target", "head",
    "person", "clothes", "modality", "camera",
    "all_features", "all_embeddings", "all_logits", "clothes_to_person",
)
"""What a loss may consume (see `Loss.consumes`).

Per head (the loss is called once for each head it applies to):
  - ``features``: the backbone's feature of that head before the neck, float (B, D)
  - ``embeddings``: the same after the BNNeck's BatchNorm (the retrieval embedding), float (B, D)
  - ``logits``: that head's classifier output, float (B, num_classes of the head)
  - ``target``: the label that head classifies (person or clothes identity), long (B,)
  - ``head``: the head's index, an int (0-5 for a six-head model, protocol order)
Per batch (a loss consuming any ``all_*`` input is called once per step, not once per head):
  - ``all_features`` / ``all_embeddings``: float (B, H, D); ``all_logits``: a list of H tensors
  - ``person``, ``clothes``: long (B,) labels, relabelled 0..P-1 and 0..C-1 (clothes identity)
  - ``modality``: long (B,) 1 = RGB, 2 = infrared; ``camera``: long (B,) 1-16
  - ``clothes_to_person``: long (C,) the person label of each clothes identity
"""

HEAD_TARGETS = ("person", "clothes")


@dataclass(frozen=True)
class Backbone:
    """A feature extractor.

    ``factory(**kwargs)`` returns a ``torch.nn.Module`` mapping images (B, 3, H, W), normalised
    with ``normalization``, to features (B, D) or (B, 6, D), in train and eval mode alike; six
    outputs are one per scenario in protocol order (DT-ST, DT-LT, NT-ST, NT-LT, AD-ST, AD-LT).
    ``D`` must equal ``embed_dim`` as built from ``defaults`` (a factory argument may change it:
    the host then reads the size from the model's ``embed_dim`` attribute when it has one).
    The factory accepts ``pretrained`` (``False``, ``True`` for the hub's weights, or a local
    path) when the backbone can load pretrained weights.

    The host adds the neck (BNNeck) and the classifiers; a backbone returns plain features.
    """

    name: str
    factory: Callable[..., Any]
    embed_dim: int
    num_outputs: Literal[1, 6] = 1
    defaults: dict[str, Any] = field(default_factory=dict)
    input_size: tuple[int, int] = (256, 128)
    normalization: ImageNormalization = IMAGENET_NORMALIZATION
    description: str = ""


@dataclass(frozen=True)
class LossContext:
    """What the host knows when it builds a loss: handed to every loss factory."""

    num_persons: int
    num_clothes: int
    embed_dim: int
    num_heads: int
    heads: tuple[str, ...] = ()
    """What each head's classifier predicts, in head order (``"person"`` or ``"clothes"``, see
    ``MethodRecipe.heads``); empty where the host does not know (a loss checked on its own)."""


@dataclass(frozen=True)
class Loss:
    """A training objective.

    ``factory(context: LossContext, **kwargs)`` returns a ``torch.nn.Module`` whose ``forward``
    takes exactly the keyword arguments named in ``consumes`` (see ``LOSS_INPUTS``) and returns a
    scalar tensor. Parameters of the module (a center loss's centres, say) are trained with the
    model. ``sampler`` states a batch constraint: ``"pk"`` when the loss needs P persons x K
    images per batch (a triplet loss), ``None`` otherwise.
    """

    name: str
    factory: Callable[..., Any]
    consumes: tuple[str, ...]
    defaults: dict[str, Any] = field(default_factory=dict)
    sampler: Literal["pk"] | None = None
    description: str = ""


@dataclass(frozen=True)
class LossTerm:
    """One weighted loss of a method. ``heads``: ``"each"`` applies it to every head and averages
    over them; a tuple of indices picks heads. A loss that consumes ``all_*`` inputs ignores it."""

    loss: str
    weight: float = 1.0
    args: dict[str, Any] = field(default_factory=dict)
    heads: Literal["each"] | tuple[int, ...] = "each"


@dataclass(frozen=True)
class MethodRecipe:
    """A method's recipe: backbone + neck/heads + weighted losses + training hyperparameters.

    - ``backbone`` names a registered backbone (``plugin:name`` or a short name); ``backbone_args``
      override its defaults.
    - ``heads`` gives, for each backbone output, what its classifier predicts: ``"person"`` or
      ``"clothes"`` (clothes identity). Its length is the backbone's ``num_outputs``.
    - ``neck``: ``"bnneck"`` (BatchNorm with a frozen zero bias, then a bias-free classifier; the
      post-BatchNorm vector is the embedding) or ``"linear"`` (a bias-free classifier on the raw
      feature, which is then the embedding).
    - ``train``: training hyperparameters; any key of ``atzoo.config.TrainConfig`` (optimizer, lr,
      weight_decay, warmup_epochs, epochs, iters_per_epoch, num_persons/num_instances per batch,
      modality_balanced, image_size, pad, flip, erasing, grad_clip, amp, ...). Users override them
      with ``atzoo train METHOD --set key=value``.
    - ``model_factory``: only for methods that need their own model code; called as
      ``model_factory(method, backbone_module, num_persons, num_clothes)`` and returning a module
      with the same train/eval outputs as the host's model (``atzoo.model.ReIDModel``).
    - ``train_step``: only for methods whose step is not "forward, losses" (two views of a batch,
      modality mixing): called as ``train_step(model, batch, compute_losses)`` inside the runner's
      autocast, where ``compute_losses(outputs, batch)`` returns the method's weighted loss and its
      parts; it returns ``(loss, parts)``. The runner still does backward, clipping, the optimizer
      steps, the schedule, the NaN check and the checkpoints.
    - ``task_family``: one of ``TASK_FAMILIES`` (the board filters on it) or ``""``.
    """

    name: str
    backbone: str
    losses: tuple[LossTerm, ...]
    backbone_args: dict[str, Any] = field(default_factory=dict)
    heads: tuple[str, ...] = ("person",)
    neck: Literal["bnneck", "linear"] = "bnneck"
    train: dict[str, Any] = field(default_factory=dict)
    model_factory: Callable[..., Any] | None = None
    train_step: Callable[..., Any] | None = None
    task_family: str = ""
    paper: str = ""
    description: str = ""


Method = MethodRecipe
"""The name plugins written for atzoo 0.1 use; new code says `MethodRecipe` (a leaderboard entry's
`Method` is another concept)."""


@dataclass(frozen=True)
class PretrainedWeights:
    """Trained weights of a method, published on the Hugging Face Hub.

    ``atzoo.create_model(method, pretrained=tag)`` downloads ``filename`` from ``repo_id`` at the
    pinned ``revision`` and refuses it unless its sha256 matches. ``metrics`` holds the aggregate
    results (per scenario and Any-Time) the weights were published with.
    """

    method: str
    tag: str
    repo_id: str
    revision: str
    sha256: str
    filename: str = "model.safetensors"
    metrics: dict[str, Any] = field(default_factory=dict)
    license: str = ""
    dataset_release: str = ""
    description: str = ""


class AtzooHookSpecs:
    """The hooks. Implement any subset, with the same names, decorated with ``@hookimpl``."""

    @hookspec
    def atzoo_register_backbones(self, register: Callable[[Backbone], None]) -> None:
        """Register backbones: call ``register(Backbone(...))`` once for each."""

    @hookspec
    def atzoo_register_losses(self, register: Callable[[Loss], None]) -> None:
        """Register losses: call ``register(Loss(...))`` once for each."""

    @hookspec
    def atzoo_register_methods(self, register: Callable[[MethodRecipe], None]) -> None:
        """Register methods (recipes): call ``register(MethodRecipe(...))`` once for each."""

    @hookspec
    def atzoo_register_weights(self, register: Callable[[PretrainedWeights], None]) -> None:
        """Register published pretrained weights: call ``register(PretrainedWeights(...))``."""
