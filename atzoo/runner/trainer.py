"""The shared training loop: every method is trained by this same code.

Determinism: the model is initialised from the config's seed, and every epoch reseeds the global
RNG (dropout, drop-path) and the data pipeline from (seed, epoch). A run resumed from an epoch
checkpoint therefore ends with the same weights as one that was never interrupted.
"""

from __future__ import annotations

import itertools
import math
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import save_model
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from atzoo.data import Records, build_train_set, parse_root
from atzoo.data.cache import dataset_fingerprint
from atzoo.data.loaders import train_loader
from atzoo.data.sets import TrainSet, require_test_sets
from atzoo.errors import AtzooError
from atzoo.formats.checkpoint import weights_metadata
from atzoo.formats.runconfig import RunConfig
from atzoo.io import atomic_path
from atzoo.protocol import PROTOCOL_VERSION
from atzoo.runner import distributed
from atzoo.runner.checkpoint import load_checkpoint, read_checkpoint_epoch, save_checkpoint
from atzoo.runner.environment import describe_environment
from atzoo.formats.metrics import write_results
from atzoo.runner.evaluation import evaluate_model, measured_results
from atzoo.runner.objective import Objective
from atzoo.runner.optim import build_optimizer, lr_factor, set_learning_rate
from atzoo.runner.recipe import ResolvedRecipe, build_model, loss_context, resolve_recipe
from atzoo.runner.rundir import (CHECKPOINT, DATASET, ENVIRONMENT, METRICS_FILE, MODEL, RunDir, new_run_dir,
                                 open_run_dir)
from atzoo.weights_bytes import sort_metadata

if TYPE_CHECKING:
    from atzoo.registry import Registry


class TrainingError(AtzooError):
    """Training cannot go on (a non-finite loss, say); the last good checkpoint is kept."""


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919 + 17) % (2**31)


def _resolve_for_resume(run: RunDir, method: str, overrides: dict[str, Any]) -> tuple[ResolvedRecipe, dict]:
    saved = run.config
    recipe = ResolvedRecipe.from_json(saved["recipe"])
    if method not in (recipe.method.qualified_name, recipe.method.qualified_name.split(":", 1)[1]):
        raise AtzooError(f"run {run.path} trains {recipe.method.qualified_name}, not {method}")
    changed = {k: v for k, v in overrides.items() if recipe.overrides.get(k) != v}
    if changed:
        raise AtzooError(f"--resume continues the run with its saved settings; these differ: "
                         f"{', '.join(f'{k}={v!r} (saved {recipe.overrides.get(k)!r})' for k, v in changed.items())}")
    return recipe, saved


def _records_and_sets(data_root: Path, skip_bad_names: bool) -> tuple[Records, TrainSet]:
    records = parse_root(data_root, skip_bad_names=skip_bad_names)
    train_set = build_train_set(records)
    require_test_sets(records)
    return records, train_set


def _dataset_info(records: Records, train_set: TrainSet) -> dict[str, Any]:
    return {"fingerprint": dataset_fingerprint(records), "images": len(records),
            "train_images": len(train_set), "train_persons": train_set.num_persons,
            "train_clothes": train_set.num_clothes}


def _autocast(recipe: ResolvedRecipe, device: torch.device) -> torch.autocast:
    enabled = recipe.train.amp and device.type == "cuda"
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def _write_model(run: RunDir, model: torch.nn.Module, recipe: ResolvedRecipe) -> None:
    with atomic_path(run.file(MODEL)) as tmp:
        save_model(model, str(tmp), metadata=weights_metadata(recipe.method.qualified_name))
        sort_metadata(tmp)


def train(method: str, data_root: str | Path | None, out_dir: str | Path, overrides: dict[str, Any] | None = None,
          *, resume: bool = False, registry: Registry | None = None, progress: bool = True,
          skip_bad_names: bool = False) -> RunDir:
    """Train `method` on the dataset at `data_root`, write the run to `out_dir`, evaluate it.

    Everything the user can get wrong (method, settings and their ranges, data, a batch larger than
    the dataset, a backbone that cannot be built) is checked before the run directory is created, so
    a refused run leaves nothing behind.
    """
    from atzoo.registry import load_registry

    overrides = dict(overrides or {})
    registry = registry or load_registry()
    context = distributed.setup()
    try:
        if resume:
            run = open_run_dir(out_dir)
            recipe, saved = _resolve_for_resume(run, method, overrides)
            data_root = Path(data_root or saved["data_root"])
            records, train_set = _records_and_sets(data_root, skip_bad_names)
            if dataset_fingerprint(records) != saved["dataset_fingerprint"]:
                raise AtzooError(f"the dataset at {data_root} differs from the one run {run.path} was trained on "
                                 f"(fingerprint mismatch)")
            parts = _training_parts(recipe, train_set, registry, context)
        else:
            if data_root is None:
                raise AtzooError("no dataset given: pass --data ROOT")
            recipe = resolve_recipe(method, overrides, registry)
            data_root = Path(data_root)
            records, train_set = _records_and_sets(data_root, skip_bad_names)
            parts = _training_parts(recipe, train_set, registry, context)
            run = new_run_dir(out_dir) if context.is_main else RunDir(Path(out_dir))
        distributed.barrier(context)
        try:
            return _train(run, recipe, data_root, records, train_set, parts, context, resume, progress)
        except BaseException:
            if not resume and context.is_main:
                _remove_unstarted_run(run)
            raise
    finally:
        distributed.teardown(context)


class _Parts:
    """What a run trains with, built before its folder exists."""

    def __init__(self, model: torch.nn.Module, objective: Objective, optimizer: Any, loader: Any,
                 train_step: Any) -> None:
        self.model, self.objective, self.optimizer, self.loader = model, objective, optimizer, loader
        self.train_step = train_step


def _loss_parameters(recipe: ResolvedRecipe, objective: Objective) -> dict[str, tuple[float, list[str]]]:
    """For each key of `loss_optimizers`: the matching loss term's weight and its parameters' names."""
    found = {}
    for key in recipe.train.loss_optimizers:
        for index, term in enumerate(recipe.losses):
            if key in (term["loss"], term["loss"].split(":", 1)[1]):
                names = [f"losses.modules_.{index}.{name}" for name, _ in objective.modules_[index].named_parameters()]
                found[key] = (float(term["weight"]), names)
    return found


def _training_parts(recipe: ResolvedRecipe, train_set: TrainSet, registry: Registry,
                    context: distributed.Context) -> _Parts:
    """The data loader (built once per run: its workers persist across epochs), model, losses and
    optimizers. Anything that cannot be built fails here, before the run folder is created."""
    config = recipe.train
    loader = train_loader(train_set, config, recipe.normalization, epoch=0, rank=context.rank,
                          world_size=context.world_size, device=context.device)
    torch.manual_seed(config.seed)
    model = build_model(recipe, train_set.num_persons, train_set.num_clothes, registry).to(context.device)
    objective = Objective(list(recipe.losses), registry, loss_context(recipe, model, train_set.num_persons,
                                                                      train_set.num_clothes), recipe.heads)
    objective = objective.to(context.device)
    optimizer = build_optimizer(itertools.chain(model.named_parameters(), objective.named_parameters(prefix="losses")),
                                config, _loss_parameters(recipe, objective))
    method = registry.get("methods", recipe.method.qualified_name).item
    return _Parts(model, objective, optimizer, loader, method.train_step)


def _default_step(model: torch.nn.Module, batch: dict[str, Any],
                  compute_losses: Any) -> tuple[torch.Tensor, dict[str, float]]:
    return compute_losses(model(batch["image"]), batch)


UNSTARTED_RUN_FILES = frozenset({"config.json", DATASET, ENVIRONMENT})


def _remove_unstarted_run(run: RunDir) -> None:
    """A new run that stops before its first epoch is logged (its first step raises, say a
    backbone refusing the image size, or it is interrupted) leaves nothing behind, so the same
    command can be retried; a folder holding anything else (a log line, a checkpoint) is kept."""
    names = {entry.name for entry in run.path.iterdir()}
    if names <= UNSTARTED_RUN_FILES:
        shutil.rmtree(run.path, ignore_errors=True)


def _train(run: RunDir, recipe: ResolvedRecipe, data_root: Path, records: Records, train_set: TrainSet, parts: _Parts,
           context: distributed.Context, resume: bool, progress: bool) -> RunDir:
    config = recipe.train
    device = context.device
    dataset_info = _dataset_info(records, train_set)
    if context.is_main and not resume:
        run.write_config(RunConfig(
            protocol_version=PROTOCOL_VERSION, recipe=recipe, data_root=str(data_root.resolve()),
            dataset_fingerprint=dataset_info["fingerprint"], num_persons=train_set.num_persons,
            num_clothes=train_set.num_clothes))
        run.write_json(DATASET, dataset_info)
    if context.is_main:
        run.write_json(ENVIRONMENT, describe_environment(device, context.world_size))

    model, objective, optimizer, loader = parts.model, parts.objective, parts.optimizer, parts.loader
    start_epoch, step = 0, 0
    if resume and run.file(CHECKPOINT).exists():
        start_epoch, step = load_checkpoint(run.file(CHECKPOINT), model=model, losses=objective, optimizer=optimizer)
        if context.is_main:
            run.truncate_log(start_epoch)
    elif context.is_main and resume:
        run.truncate_log(0)
    trained = DistributedDataParallel(model, find_unused_parameters=True) if context.distributed else model
    clothes_to_person = torch.as_tensor(train_set.clothes_to_person, device=device)
    steps_per_epoch = loader.sampler.steps
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = steps_per_epoch * config.warmup_epochs
    train_step = parts.train_step or _default_step

    def compute_losses(outputs: dict[str, Any], batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        return objective(outputs, batch, clothes_to_person)

    for epoch in range(start_epoch, config.epochs):
        torch.manual_seed(epoch_seed(config.seed, epoch))
        loader.sampler.set_epoch(epoch)
        trained.train()
        sums: dict[str, float] = {}
        started = time.perf_counter()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}",
                   disable=None if progress and context.is_main else True,
                   leave=False, dynamic_ncols=True)
        for batch in bar:
            set_learning_rate(optimizer, config.lr, lr_factor(step, total_steps, warmup_steps, config, steps_per_epoch))
            batch = {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            with _autocast(recipe, device):
                loss, losses = train_step(trained, batch, compute_losses)
            if distributed.broadcast_flag(not math.isfinite(float(loss.detach())), context):
                last = (f"epoch {read_checkpoint_epoch(run.file(CHECKPOINT))}" if run.file(CHECKPOINT).exists()
                        else "none yet")
                raise TrainingError(f"the loss became {float(loss.detach())} at epoch {epoch + 1}, step {step + 1}; "
                                    f"training stopped. The last good checkpoint ({last}) is kept at "
                                    f"{run.file(CHECKPOINT)}; lower the learning rate or check the data.")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            distributed.average_gradients(objective.parameters(), context)
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(list(model.parameters()) + list(objective.parameters()), config.grad_clip)
            optimizer.step()
            step += 1
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + value
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        seconds = time.perf_counter() - started
        batches = max(1, steps_per_epoch)
        if context.is_main:
            run.append_log({"epoch": epoch + 1, "step": step, "lr": optimizer.param_groups[0]["lr"],
                            **{k: v / batches for k, v in sums.items()}, "seconds": round(seconds, 3),
                            "images_per_s": round(steps_per_epoch * config.batch_size / max(seconds, 1e-9), 2)})
            if (epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == config.epochs:
                save_checkpoint(run.file(CHECKPOINT), model=model, losses=objective, optimizer=optimizer,
                                epoch=epoch + 1, step=step)
        distributed.barrier(context)

    distributed.broadcast_buffers(model, context)
    if context.is_main:
        _write_model(run, model, recipe)
    metrics = evaluate_model(model, records, recipe, context, progress=progress)
    if metrics is not None:
        write_results(run.file(METRICS_FILE), measured_results(metrics, records, run.file(MODEL)))
    distributed.barrier(context)
    return run
