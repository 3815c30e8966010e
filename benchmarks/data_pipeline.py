"""Train-loader throughput (images/s) with and without the decoded-image cache.

Generates a synthetic AT-USTC (JPEG/PNG files at `--source-size`) once under `--workdir`, then
times full train-loader epochs (decode or cache read, augmentation, collation) for each image
size x num_workers x cache setting and prints a table. The first, cache-building epoch is not
timed; the cache build time is printed separately.

    python benchmarks/data_pipeline.py --workdir /tmp/atzoo-bench
    python benchmarks/data_pipeline.py --ids 40 --workers 0 2 4 --sizes 128x64 256x128
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from atzoo.config import TrainConfig
from atzoo.data import build_train_set, parse_root
from atzoo.data.cache import ImageCache
from atzoo.data.loaders import train_loader
from atzoo.data.sets import TrainSet
from atzoo.data.synthetic import SynthConfig, generate
from atzoo.plugin import IMAGENET_NORMALIZATION


def parse_size(text: str) -> tuple[int, int]:
    height, _, width = text.lower().partition("x")
    return int(height), int(width)


def dataset(workdir: Path, ids: int, source_size: tuple[int, int]) -> Path:
    root = workdir / f"synthetic-{ids}-{source_size[0]}x{source_size[1]}"
    if not root.exists():
        generate(root, SynthConfig(ids=ids, size=source_size), progress=True)
    return root


def images_per_second(train_set: TrainSet, config: TrainConfig, cache_dir: Path, epochs: int) -> float:
    images, started = 0, time.perf_counter()
    for epoch in range(epochs):
        for batch in train_loader(train_set, config, IMAGENET_NORMALIZATION, epoch=epoch, cache_dir=cache_dir):
            images += len(batch["index"])
    return images / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/atzoo-data-bench"))
    parser.add_argument("--ids", type=int, default=40, help="synthetic persons (half are train persons)")
    parser.add_argument("--source-size", type=parse_size, default=(256, 128), help="stored image HxW")
    parser.add_argument("--sizes", type=parse_size, nargs="+", default=[(128, 64), (256, 128)])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, nargs=2, default=(16, 4), metavar=("P", "K"))
    args = parser.parse_args()

    train_set = build_train_set(parse_root(dataset(args.workdir, args.ids, args.source_size)))
    cache_dir = args.workdir / "cache"
    print(f"train images: {len(train_set)}, batch {args.batch[0]}x{args.batch[1]}, {args.epochs} epoch(s) timed")
    rows = []
    for size in args.sizes:
        started = time.perf_counter()
        ImageCache(train_set.records, size, cache_dir, progress=False)
        build = time.perf_counter() - started
        for workers in args.workers:
            base = TrainConfig(num_persons=args.batch[0], num_instances=args.batch[1], image_size=size,
                               num_workers=workers)
            decoded = images_per_second(train_set, base.model_copy(update={"cache": False}), cache_dir, args.epochs)
            cached = images_per_second(train_set, base.model_copy(update={"cache": True}), cache_dir, args.epochs)
            rows.append((f"{size[0]}x{size[1]}", workers, decoded, cached, build))
    print(f"{'size':>8} {'workers':>7} {'decode img/s':>13} {'cache img/s':>12} {'speed-up':>8} {'cache build s':>13}")
    for size, workers, decoded, cached, build in rows:
        print(f"{size:>8} {workers:>7} {decoded:>13.0f} {cached:>12.0f} {cached / decoded:>7.1f}x {build:>13.1f}")


if __name__ == "__main__":
    main()
