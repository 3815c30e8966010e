"""DataLoaders for training (P x K batches, seeded augmentation) and feature extraction (in order).

A train batch is a dict: `image` float (B, 3, H, W) normalised, `index` (row in the train set's
records), `person` (relabelled person), `clothes` (clothes identity), `modality` (1 RGB, 2 IR) and
`camera`, all long. An eval batch holds `image` and `index`.

The train loader's workers read uint8 images and draw each sample's augmentation; the batch is
augmented and normalised as a whole (`BatchAugment`), on the training device when one is given.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from atzoo.config import TrainConfig
from atzoo.data.cache import ImageCache, decode_resized
from atzoo.data.layout import Records
from atzoo.data.sampler import PKSampler
from atzoo.data.sets import TrainSet
from atzoo.data.transforms import (ERASING_RATIO, ERASING_SCALE, Augmentation, BatchAugment, Normalization,
                                   SampleDraw, build_eval_transform)


class ReIDImages(Dataset):
    """Images of `records` at `image_size`, transformed, with per-image label columns.

    An item is a record index, or an (index, sample_seed) pair from `PKSampler`; the seed is
    handed to the transform. Images come from `cache` when given, else are decoded and resized.
    """

    def __init__(self, records: Records, image_size: tuple[int, int], transform: Callable[..., Any], *,
                 labels: dict[str, np.ndarray] | None = None, cache: ImageCache | None = None) -> None:
        self.records = records
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.transform = transform
        self.labels = {name: np.asarray(values, dtype=np.int64) for name, values in (labels or {}).items()}
        for name, values in self.labels.items():
            if len(values) != len(records):
                raise ValueError(f"label column {name!r} has {len(values)} rows for {len(records)} images")
        if cache is not None and (len(cache) != len(records) or cache.image_size != self.image_size):
            raise ValueError(f"the image cache holds {len(cache)} images at {cache.image_size}, "
                             f"expected {len(records)} at {self.image_size}")
        self.cache = cache

    def __len__(self) -> int:
        return len(self.records)

    def pixels(self, index: int) -> np.ndarray:
        """Record `index` as uint8 (H, W, 3), resized."""
        if self.cache is not None:
            return self.cache[index]
        return decode_resized(self.records.root / self.records.path[index], self.image_size)

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:
        index, seed = (item, None) if isinstance(item, (int, np.integer)) else item
        index = int(index)
        transformed = self.transform(self.pixels(index), seed)
        sample = {**(transformed if isinstance(transformed, dict) else {"image": transformed}), "index": index}
        for name, values in self.labels.items():
            sample[name] = int(values[index])
        return sample


def _loader_options(num_workers: int) -> dict[str, Any]:
    return {"num_workers": num_workers, "persistent_workers": num_workers > 0,
            "pin_memory": torch.cuda.is_available()}


def _train_labels(train_set: TrainSet) -> dict[str, np.ndarray]:
    records = train_set.records
    return {"person": train_set.person_label, "clothes": train_set.clothes_label,
            "modality": records.modality, "camera": records.camera}


def train_sampler(train_set: TrainSet, config: TrainConfig, *, epoch: int, rank: int = 0,
                  world_size: int = 1) -> PKSampler:
    return PKSampler(train_set.person_label, config.num_persons, config.num_instances, seed=config.seed,
                     epoch=epoch, modality=train_set.records.modality, modality_balanced=config.modality_balanced,
                     rank=rank, world_size=world_size, iters_per_epoch=config.iters_per_epoch)


def collate_samples(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch: the samples' tensors stacked into one tensor each, their ints as int64 NumPy arrays.

    Stacking runs in NumPy, on one thread (torch's parallel stack waited for a descheduled thread
    on a shared machine, 84 ms for 16 images of 256x128), straight into the output tensor, which a
    worker process allocates in shared memory (as torch's own collate does) so that handing it over
    copies nothing. The small int columns travel as NumPy arrays, pickled with the batch: each
    tensor a worker hands over costs a shared-memory segment of its own, which for seven small
    columns cost more than the image itself. `AugmentedBatches` turns them into tensors."""
    batch: dict[str, Any] = {}
    in_worker = torch.utils.data.get_worker_info() is not None
    for key, first in samples[0].items():
        if isinstance(first, torch.Tensor):
            stacked = torch.empty((len(samples), *first.shape), dtype=first.dtype)
            if in_worker:
                stacked.share_memory_()
            np.stack([sample[key].numpy() for sample in samples], out=stacked.numpy())
            batch[key] = stacked
        else:
            batch[key] = np.array([sample[key] for sample in samples], dtype=np.int64)
    return batch


class AugmentedBatches:
    """A DataLoader of uint8 batches with their augmentation choices, yielding augmented float
    batches; `len()` and the loader's attributes are the DataLoader's."""

    def __init__(self, loader: DataLoader, augment: BatchAugment) -> None:
        self.loader = loader
        self.augment = augment

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for batch in self.loader:
            batch = {key: torch.from_numpy(value) if isinstance(value, np.ndarray) else value
                     for key, value in batch.items()}
            choices = batch.pop("augment")
            batch["image"] = self.augment(batch["image"], choices)
            yield batch


def train_augmentation(config: TrainConfig) -> Augmentation:
    """The config's augmentation (erasing_scale and erasing_ratio where the config has them)."""
    return Augmentation((int(config.image_size[0]), int(config.image_size[1])), pad=config.pad, flip=config.flip, erasing=config.erasing,
                        erasing_scale=getattr(config, "erasing_scale", ERASING_SCALE),
                        erasing_ratio=getattr(config, "erasing_ratio", ERASING_RATIO))


def train_loader(train_set: TrainSet, config: TrainConfig, normalization: Normalization, *, epoch: int,
                 rank: int = 0, world_size: int = 1, cache_dir: str | os.PathLike | None = None,
                 device: Any = None) -> AugmentedBatches:
    """This rank's batches of `epoch`: P x K images each, `len()` steps (the same on every rank).

    The batches and their augmentation depend only on (config.seed, epoch, rank, world_size), not
    on num_workers or `device`. With `config.cache` the decoded images are cached under `cache_dir`
    (default `$ATZOO_CACHE_DIR` or `~/.cache/atzoo`) and the batches are read from it in this
    process: with nothing left to decode, handing batches over from worker processes cost more than
    reading them (docs/benchmarks.md, *Data pipeline*), so `num_workers` then only matters for
    decoding, when the cache is off. With `device` (e.g. the training GPU) the batches are
    augmented there and come out on it.
    """
    augmentation = train_augmentation(config)
    image_size = augmentation.image_size
    cache = ImageCache(train_set.records, image_size, cache_dir) if config.cache else None
    dataset = ReIDImages(train_set.records, image_size, SampleDraw(augmentation), labels=_train_labels(train_set),
                         cache=cache)
    sampler = train_sampler(train_set, config, epoch=epoch, rank=rank, world_size=world_size)
    workers = 0 if cache is not None else config.num_workers
    loader = DataLoader(dataset, batch_size=config.batch_size, sampler=sampler, drop_last=False,
                        collate_fn=collate_samples, **_loader_options(workers))
    return AugmentedBatches(loader, BatchAugment(normalization, config.pad, device))


def eval_loader(records: Records, image_size: tuple[int, int], normalization: Normalization, *, batch_size: int,
                num_workers: int, cache_dir: str | os.PathLike | None = None, use_cache: bool = True) -> DataLoader:
    """`records` in order, no augmentation; batches hold `image` and `index`.

    With `use_cache` the decoded images are cached under `cache_dir` (default `$ATZOO_CACHE_DIR`
    or `~/.cache/atzoo`); without it each image is decoded every time.
    """
    image_size = (int(image_size[0]), int(image_size[1]))
    cache = ImageCache(records, image_size, cache_dir) if use_cache and len(records) else None
    dataset = ReIDImages(records, image_size, build_eval_transform(image_size, normalization), cache=cache)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, drop_last=False,
                      **_loader_options(num_workers))
