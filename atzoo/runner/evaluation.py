"""Feature extraction on the protocol's test images and the six-scenario evaluation of a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TYPE_CHECKING

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_model
from tqdm.auto import tqdm

from atzoo.data import Records, parse_root
from atzoo.data.loaders import eval_loader
from atzoo.data.sets import require_test_sets
from atzoo.errors import AtzooError
from atzoo.evaluation import evaluate_features
from atzoo.protocol import SCENARIO_FLAGS
from atzoo.runner import distributed
from atzoo.runner.recipe import ResolvedRecipe, build_model
from atzoo.runner.rundir import METRICS_FILE, MODEL, RunDir, open_run_dir

if TYPE_CHECKING:
    from atzoo.registry import Registry

def protocol_test_records(records: Records) -> Records:
    """The images some scenario uses: query and gallery flags 2-9 (flag 10 is used by none)."""
    require_test_sets(records)
    return records.with_flags(SCENARIO_FLAGS)


@torch.no_grad()
def extract_features(model: torch.nn.Module, records: Records, recipe: ResolvedRecipe,
                     context: distributed.Context, *, progress: bool = True) -> torch.Tensor:
    """Embeddings of `records` in their order, (N, D) or (N, 6, D), float32 on the CPU.

    Under torchrun each rank embeds every world_size-th image and the rows are gathered.
    """
    shard = records.subset(np.arange(context.rank, len(records), context.world_size))
    config = recipe.train
    loader = eval_loader(shard, config.image_size, recipe.normalization, batch_size=config.eval_batch_size,
                         num_workers=config.num_workers, use_cache=config.cache)
    was_training = model.training
    model.eval()
    chunks = []
    autocast = torch.autocast(device_type=context.device.type, dtype=torch.bfloat16,
                              enabled=config.amp and context.device.type == "cuda")
    for batch in tqdm(loader, desc="features", disable=None if progress and context.is_main else True, leave=False,
                      dynamic_ncols=True):
        with autocast:
            chunks.append(model(batch["image"].to(context.device, non_blocking=True)).float())
    model.train(was_training)
    local = torch.cat(chunks) if chunks else torch.empty(0)
    return distributed.gather_rows(local, len(records), context).cpu()


def evaluate_model(model: torch.nn.Module, records: Records, recipe: ResolvedRecipe,
                   context: distributed.Context, *, progress: bool = True) -> dict[str, Any] | None:
    """Six scenarios, Any-Time and the mixed test; computed on rank 0 (None elsewhere)."""
    test = protocol_test_records(records)
    features = extract_features(model, test, recipe, context, progress=progress)
    if not context.is_main:
        return None
    return evaluate_features(features.numpy(), test.person, test.clothes, test.camera, test.flag)


def load_run_model(run: RunDir, registry: Registry, device: torch.device) -> tuple[torch.nn.Module, ResolvedRecipe]:
    """Rebuild a run's model through the registry and load its final weights strictly."""
    config = run.read_config()
    recipe = config.recipe
    model = build_model(recipe, config.num_persons, config.num_clothes, registry)
    try:
        missing, unexpected = load_model(model, str(run.file(MODEL)), strict=True)
    except (SafetensorError, OSError) as error:
        raise AtzooError(f"{run.file(MODEL)} cannot be read ({error}); it is damaged or truncated") from None
    except RuntimeError as error:
        raise AtzooError(f"{run.file(MODEL)} does not match the model its config describes: {error}") from None
    return model.to(device).eval(), recipe


def evaluate_run(run_dir: str | Path, data_root: str | Path | None = None, *, registry: Registry | None = None,
                 progress: bool = True, skip_bad_names: bool = False) -> dict[str, Any] | None:
    """Evaluate a finished run on `data_root` (default: the dataset it was trained on) and write
    `metrics.json`."""
    from atzoo.registry import load_registry

    run = open_run_dir(run_dir, need=("config.json", MODEL))
    registry = registry or load_registry()
    context = distributed.setup()
    try:
        model, recipe = load_run_model(run, registry, context.device)
        root = Path(data_root or run.read_config().data_root)
        records = parse_root(root, skip_bad_names=skip_bad_names)
        metrics = evaluate_model(model, records, recipe, context, progress=progress)
        if context.is_main:
            run.write_json(METRICS_FILE, metrics)
        distributed.barrier(context)
        return metrics
    finally:
        distributed.teardown(context)


def evaluate_initialisation(run_dir: str | Path, *, registry: Registry | None = None,
                            progress: bool = True) -> dict[str, Any] | None:
    """The metrics of a run's model as its training started (same recipe, same seed, no training):
    the floor a trained model must clear by a wide margin."""
    from atzoo.registry import load_registry

    run = open_run_dir(run_dir, need=("config.json",))
    registry = registry or load_registry()
    context = distributed.setup()
    try:
        config = run.read_config()
        recipe = config.recipe
        torch.manual_seed(recipe.train.seed)
        model = build_model(recipe, config.num_persons, config.num_clothes, registry).to(context.device)
        records = parse_root(config.data_root)
        return evaluate_model(model, records, recipe, context, progress=progress)
    finally:
        distributed.teardown(context)
