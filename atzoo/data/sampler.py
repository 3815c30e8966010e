"""P x K identity sampling: each batch holds P distinct persons with K images each.

Persons are drawn from a shuffled cycle (every person is used before any is reused), and each
person's images from its own shuffled cycle, so an epoch touches the images about evenly. A person
with fewer than K images (of a modality) contributes all of them plus random repeats.

Under DDP every rank computes the same global sequence of batches from (seed, epoch) and takes
every world_size-th batch: rank r gets batches r, r + W, r + 2W, ... The sampler yields
(index, sample_seed) pairs; the sample seed drives that image's augmentation.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

from atzoo.errors import AtzooError
from atzoo.protocol import IR, RGB

SEED_LIMIT = 2**31


class _Cycle:
    """Items handed out in shuffled passes; a pass is reshuffled when it cannot serve a request."""

    def __init__(self, items: np.ndarray, rng: np.random.Generator) -> None:
        self.items, self.rng = items, rng
        self.order, self.cursor = rng.permutation(items), 0

    def take(self, count: int) -> np.ndarray:
        if len(self.items) < count:
            extra = self.rng.choice(self.items, count - len(self.items), replace=True)
            return self.rng.permutation(np.concatenate([self.items, extra]))
        if self.cursor + count > len(self.order):
            self.order, self.cursor = self.rng.permutation(self.items), 0
        taken = self.order[self.cursor:self.cursor + count]
        self.cursor += count
        return taken


class _PersonCycle:
    """Persons in shuffled passes, `count` distinct ones per request."""

    def __init__(self, persons: np.ndarray, rng: np.random.Generator) -> None:
        self.persons, self.rng = persons, rng
        self.queue: list[int] = []

    def take(self, count: int) -> list[int]:
        chosen: list[int] = []
        deferred: list[int] = []
        while len(chosen) < count:
            if not self.queue:
                self.queue = [int(p) for p in self.rng.permutation(self.persons)]
            person = self.queue.pop(0)
            (deferred if person in chosen else chosen).append(person)
        self.queue = deferred + self.queue
        return chosen


class PKSampler(Sampler):
    """Yields (index, sample_seed) pairs, batch by batch: P persons x K images per batch.

    Length: `iters_per_epoch` batches per rank when given; else `len(person_labels) // (P * K *
    world_size)` batches per rank (at least one), so the ranks together see about one pass over
    the dataset. `modality_balanced` (the Uni-AT recipe) gives each person K - K//2 RGB and K//2
    IR images when it has both modalities, K of its only modality otherwise.
    """

    def __init__(self, person_labels: np.ndarray, num_persons: int, num_instances: int, *, seed: int,
                 epoch: int = 0, modality: np.ndarray | None = None, modality_balanced: bool = False,
                 rank: int = 0, world_size: int = 1, iters_per_epoch: int | None = None) -> None:
        self.person_labels = np.asarray(person_labels, dtype=np.int64).reshape(-1)
        self.num_persons, self.num_instances = int(num_persons), int(num_instances)
        self.seed, self.epoch = int(seed), int(epoch)
        self.rank, self.world_size = int(rank), int(world_size)
        self._check_arguments(modality, modality_balanced, iters_per_epoch)
        self.modality_balanced = modality_balanced
        self.pools = self._pools(None if modality is None else np.asarray(modality).reshape(-1))
        self.persons = np.array(sorted(self.pools), dtype=np.int64)
        if len(self.persons) < self.num_persons:
            raise AtzooError(f"num_persons={self.num_persons} persons per batch, but the train set has only "
                             f"{len(self.persons)} persons; lower num_persons")
        if iters_per_epoch is not None:
            self.steps = int(iters_per_epoch)
        else:
            self.steps = max(1, len(self.person_labels) // (self.batch_size * self.world_size))

    @property
    def batch_size(self) -> int:
        return self.num_persons * self.num_instances

    def _check_arguments(self, modality: np.ndarray | None, modality_balanced: bool,
                         iters_per_epoch: int | None) -> None:
        if len(self.person_labels) == 0:
            raise AtzooError("the sampler got no images")
        if self.num_persons < 1 or self.num_instances < 1:
            raise AtzooError(f"num_persons and num_instances must be >= 1, got {self.num_persons} and "
                             f"{self.num_instances}")
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise AtzooError(f"rank {self.rank} is not within world_size {self.world_size}")
        if iters_per_epoch is not None and iters_per_epoch < 1:
            raise AtzooError(f"iters_per_epoch must be >= 1, got {iters_per_epoch}")
        if modality_balanced and modality is None:
            raise AtzooError("modality_balanced sampling needs the images' modality")
        if modality is not None and len(modality) != len(self.person_labels):
            raise AtzooError(f"modality has {len(modality)} entries for {len(self.person_labels)} images")

    def _pools(self, modality: np.ndarray | None) -> dict[int, dict[int, np.ndarray]]:
        """person -> {0: all its indices} or, when balancing, {RGB: ..., IR: ...} (non-empty only)."""
        order = np.argsort(self.person_labels, kind="stable")
        persons, starts = np.unique(self.person_labels[order], return_index=True)
        pools = {}
        for person, indices in zip(persons, np.split(order, starts[1:])):
            if self.modality_balanced and modality is not None:
                split = {m: indices[modality[indices] == m] for m in (RGB, IR)}
                pools[int(person)] = {m: v for m, v in split.items() if len(v)}
            else:
                pools[int(person)] = {0: indices}
        return pools

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        """Samples this rank yields: steps x P x K."""
        return self.steps * self.batch_size

    def global_batches(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every rank's batches of this epoch, in order: (indices, sample_seeds) per batch."""
        rng = np.random.default_rng([self.seed, self.epoch])
        persons = _PersonCycle(self.persons, rng)
        cycles = {p: {m: _Cycle(v, rng) for m, v in pools.items()} for p, pools in self.pools.items()}
        batches = []
        for _ in range(self.steps * self.world_size):
            indices = np.concatenate([self._person_images(cycles[p]) for p in persons.take(self.num_persons)])
            seeds = rng.integers(0, SEED_LIMIT, size=len(indices), dtype=np.int64)
            batches.append((indices, seeds))
        return batches

    def _person_images(self, cycles: dict[int, _Cycle]) -> np.ndarray:
        if len(cycles) == 2:
            rgb = self.num_instances - self.num_instances // 2
            return np.concatenate([cycles[RGB].take(rgb), cycles[IR].take(self.num_instances - rgb)])
        (only,) = cycles.values()
        return only.take(self.num_instances)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for indices, seeds in self.global_batches()[self.rank::self.world_size]:
            yield from zip(indices.tolist(), seeds.tolist())
