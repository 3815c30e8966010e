"""Train-loader throughput (images/s) before and after batch augmentation, with and without the
decoded-image cache, beside the training step's images/s.

Generates a synthetic AT-USTC (JPEG/PNG files at `--source-size`) once under `--workdir`, then
times full train-loader epochs for each image size x num_workers x {decode every epoch, cache}:
- "per-image": the augmentation applied image by image in the workers (float tensors collated),
  as before batch augmentation;
- "batch": the workers hand over uint8 images and drawn choices, the batch is augmented at once
  (`atzoo.data.loaders.train_loader`, on `--device`).
Each loader is built once per row, as the runner builds it once per run (persistent workers); its
first epoch (worker start-up, and for the cache its building) is not timed. Images/s per process
divide by the processes that read the cache: max(1, workers) for the per-image path, 1 for the
batch path, which reads cached images in the main process whatever num_workers is.
Last, the training step of `--step-method` (forward, losses, backward, optimizer step on random
batches, `benchmarks/train_speed.py`) at each size, so a user sees which side is the bottleneck.

    python benchmarks/data_pipeline.py --workdir /tmp/atzoo-bench
    python benchmarks/data_pipeline.py --ids 40 --workers 0 2 4 --sizes 128x64 256x128
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from atzoo.config import TrainConfig
from atzoo.data import build_train_set, parse_root
from atzoo.data.cache import ImageCache
from atzoo.data.loaders import ReIDImages, _loader_options, _train_labels, train_augmentation, train_loader, train_sampler
from atzoo.data.sets import TrainSet
from atzoo.data.synthetic import SynthConfig, generate
from atzoo.data.transforms import build_train_transform
from atzoo.plugin import IMAGENET_NORMALIZATION

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_speed import measure  # noqa: E402


def parse_size(text: str) -> tuple[int, int]:
    height, _, width = text.lower().partition("x")
    return int(height), int(width)


def dataset(workdir: Path, ids: int, source_size: tuple[int, int]) -> Path:
    root = workdir / f"synthetic-{ids}-{source_size[0]}x{source_size[1]}"
    if not root.exists():
        generate(root, SynthConfig(ids=ids, size=source_size), progress=True)
    return root


def per_image_loader(train_set: TrainSet, config: TrainConfig, epoch: int, cache_dir: Path) -> DataLoader:
    """The loader as it was before batch augmentation: each worker returns a float tensor per image."""
    augmentation = train_augmentation(config)
    transform = build_train_transform(augmentation.image_size, IMAGENET_NORMALIZATION, pad=config.pad,
                                      flip=config.flip, erasing=config.erasing)
    cache = ImageCache(train_set.records, augmentation.image_size, cache_dir) if config.cache else None
    images = ReIDImages(train_set.records, augmentation.image_size, transform, labels=_train_labels(train_set),
                        cache=cache)
    return DataLoader(images, batch_size=config.batch_size, sampler=train_sampler(train_set, config, epoch=epoch),
                      **_loader_options(config.num_workers))


def timed_epochs(loader: Any, epochs: int, device: torch.device) -> float:
    """Images/s of `epochs` epochs of a loader built once, as the runner builds it: one untimed
    epoch first (worker start-up), then each epoch reseeds the sampler."""
    images, started = 0, 0.0
    for epoch in range(epochs + 1):
        if epoch == 1:
            images, started = 0, time.perf_counter()
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            images += len(batch["image"].to(device))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return images / (time.perf_counter() - started)


def images_per_second(train_set: TrainSet, config: TrainConfig, cache_dir: Path, epochs: int, path: str,
                      device: torch.device) -> float:
    loader = (per_image_loader(train_set, config, 0, cache_dir) if path == "per-image" else
              train_loader(train_set, config, IMAGENET_NORMALIZATION, epoch=0, cache_dir=cache_dir, device=device))
    return timed_epochs(loader, epochs, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/atzoo-data-bench"))
    parser.add_argument("--ids", type=int, default=40, help="synthetic persons (half are train persons)")
    parser.add_argument("--source-size", type=parse_size, default=(256, 128), help="stored image HxW")
    parser.add_argument("--sizes", type=parse_size, nargs="+", default=[(128, 64), (256, 128)])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, nargs=2, default=(16, 4), metavar=("P", "K"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="where batches are augmented and the step runs")
    parser.add_argument("--step-method", default="baseline", help="method whose training step is timed ('' skips)")
    parser.add_argument("--step-batch", type=int, default=16)
    args = parser.parse_args()
    device = torch.device(args.device)

    train_set = build_train_set(parse_root(dataset(args.workdir, args.ids, args.source_size)))
    cache_dir = args.workdir / "cache"
    print(f"train images: {len(train_set)}, batch {args.batch[0]}x{args.batch[1]}, {args.epochs} epoch(s) timed, "
          f"device {device}, {os.cpu_count()} CPUs, load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    rows = []
    for size in args.sizes:
        started = time.perf_counter()
        ImageCache(train_set.records, size, cache_dir, progress=False)
        build = time.perf_counter() - started
        for workers in args.workers:
            base = TrainConfig(num_persons=args.batch[0], num_instances=args.batch[1], image_size=size,
                               num_workers=workers)
            rates = {(path, cache): images_per_second(train_set, base.model_copy(update={"cache": cache}), cache_dir,
                                                      args.epochs, path, device)
                     for path in ("per-image", "batch") for cache in (False, True)}
            rows.append((f"{size[0]}x{size[1]}", workers, rates, build))
    print(f"{'size':>8} {'workers':>7} {'path':>10} {'decode img/s':>13} {'cache img/s':>12} "
          f"{'cache/process':>13} {'vs per-image decode':>20} {'cache build s':>13}")
    for size, workers, rates, build in rows:
        baseline = rates[("per-image", False)]
        for path in ("per-image", "batch"):
            decoded, cached = rates[(path, False)], rates[(path, True)]
            print(f"{size:>8} {workers:>7} {path:>10} {decoded:>13.0f} {cached:>12.0f} "
                  f"{cached / (max(1, workers) if path == 'per-image' else 1):>13.0f} {cached / baseline:>19.1f}x "
                  f"{build:>13.1f}")
    if args.step_method:
        for size in args.sizes:
            rate = measure(args.step_method, size, args.step_batch, 3, device, bf16=device.type == "cuda",
                           channels_last=False, overrides={"backbone.pretrained": False} if args.step_method != "baseline"
                           else {})
            print(f"training step ({args.step_method}, {size[0]}x{size[1]}, batch {args.step_batch}, {device}): "
                  f"{rate:.0f} images/s")


if __name__ == "__main__":
    main()
