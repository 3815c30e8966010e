"""Batch augmentation on uint8 batches: the same tensors as the per-image transform, the same
distribution as the original per-image algorithm, and the train loader built on it."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from atzoo.data.loaders import AugmentedBatches, train_augmentation
from atzoo.data.transforms import (ERASING_RATIO, ERASING_SCALE, Augmentation, BatchAugment, SampleDraw,
                                   build_eval_transform, build_train_transform)

NORM = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
SIZE = (32, 16)


def _image() -> np.ndarray:
    """Every pixel distinct, none black, none at the mean colour."""
    rows, cols = np.meshgrid(np.arange(SIZE[0]), np.arange(SIZE[1]), indexing="ij")
    return np.stack([7 * rows + 20, 13 * cols + 30, np.full(SIZE, 77)], axis=-1).astype(np.uint8)


def _legacy(pixels: np.ndarray, seed: int, pad: int, flip: float, erasing: float) -> torch.Tensor:
    """The per-image algorithm as it was before batch augmentation (kept here as the baseline)."""
    rng = np.random.default_rng(seed)
    flip_draw, erase_draw = rng.random(2)
    if flip_draw < flip:
        pixels = pixels[:, ::-1]
    if pad:
        height, width, _ = pixels.shape
        top, left = (int(v) for v in rng.integers(0, 2 * pad + 1, size=2))
        padded = np.zeros((height + 2 * pad, width + 2 * pad, 3), dtype=np.uint8)
        padded[pad:pad + height, pad:pad + width] = pixels
        pixels = padded[top:top + height, left:left + width]
    tensor = build_eval_transform(SIZE, NORM)(np.ascontiguousarray(pixels))
    if erase_draw < erasing:
        _, height, width = tensor.shape
        area = height * width
        for _ in range(10):
            share, log_ratio = rng.uniform(*ERASING_SCALE), rng.uniform(math.log(ERASING_RATIO[0]),
                                                                         math.log(ERASING_RATIO[1]))
            ratio = math.exp(log_ratio)
            h, w = int(round(math.sqrt(area * share * ratio))), int(round(math.sqrt(area * share / ratio)))
            if 0 < h < height and 0 < w < width:
                top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
                tensor[:, top:top + h, left:left + w] = 0.0
                break
    return tensor


def _batch(seeds, pad, flip, erasing, **erasing_shape) -> torch.Tensor:
    draw = SampleDraw(Augmentation(SIZE, pad=pad, flip=flip, erasing=erasing, **erasing_shape))
    samples = [draw(_image(), seed) for seed in seeds]
    images = torch.stack([s["image"] for s in samples])
    assert images.dtype == torch.uint8 and images.shape == (len(seeds), *SIZE, 3)
    return BatchAugment(NORM, pad)(images, torch.stack([s["augment"] for s in samples]))


@pytest.mark.parametrize("pad, flip, erasing", [(0, 0.0, 0.0), (4, 0.5, 0.5), (10, 1.0, 1.0), (3, 0.3, 0.8)])
def test_batch_equals_the_original_per_image_algorithm_seed_for_seed(pad, flip, erasing):
    seeds = list(range(40))
    batch = _batch(seeds, pad, flip, erasing)
    assert batch.shape == (40, 3, *SIZE) and batch.dtype == torch.float32 and batch.is_contiguous()
    per_image = build_train_transform(SIZE, NORM, pad=pad, flip=flip, erasing=erasing)
    for index, seed in enumerate(seeds):
        assert torch.equal(batch[index], _legacy(_image(), seed, pad, flip, erasing)), seed
        assert torch.equal(batch[index], per_image(_image(), seed)), seed


def _statistics(images: torch.Tensor) -> np.ndarray:
    """Per image: flipped (0/1), erased pixels, padding pixels (binned), from the output alone."""
    plain = build_eval_transform(SIZE, NORM)(_image())
    border = (-torch.tensor(NORM[0]) / torch.tensor(NORM[1]))[:, None, None]
    erased = (images == 0).all(1).flatten(1).sum(1)
    padding = torch.isclose(images, border.expand_as(plain)).all(1).flatten(1).sum(1)
    # the middle column's first green value tells the mirror: it grows with the column
    middle = images[:, 1, SIZE[0] // 2, :]
    valid = ~torch.isclose(middle, border[1, 0, 0]) & (middle != 0)
    slope = torch.stack([torch.sign((m[v][1:] - m[v][:-1]).sum()) if v.sum() > 1 else torch.tensor(0.0)
                         for m, v in zip(middle, valid)])
    flipped = (slope < 0).long()
    assert plain.shape == images.shape[1:]
    erased_bins = np.where(erased.numpy() > 0, 1 + np.minimum(erased.numpy() // 40, 6), 0)
    return np.stack([flipped.numpy(), erased_bins, np.minimum(padding.numpy() // 30, 7)], 1)


def _homogeneity(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sample chi-square statistic over the categories of a and b, and its 1e-4 critical value
    (Wilson-Hilferty approximation)."""
    categories = np.union1d(a, b)
    counts = np.array([[np.sum(x == c) for c in categories] for x in (a, b)], dtype=float)
    expected = counts.sum(0, keepdims=True) * counts.sum(1, keepdims=True) / counts.sum()
    statistic = float(((counts - expected) ** 2 / np.maximum(expected, 1e-12)).sum())
    df = max(len(categories) - 1, 1)
    critical = df * (1 - 2 / (9 * df) + 3.72 * math.sqrt(2 / (9 * df))) ** 3
    return statistic, critical


def test_batch_augmentation_has_the_original_distribution():
    """Independent seeds: the batch path's outputs and the original per-image algorithm's agree in
    distribution (flip rate, erased area, padding area), and the rates match the settings."""
    n = 1500
    batch = _statistics(torch.cat([_batch(range(start, start + 250), 5, 0.5, 0.5) for start in range(0, n, 250)]))
    legacy = _statistics(torch.stack([_legacy(_image(), seed, 5, 0.5, 0.5) for seed in range(10**6, 10**6 + n)]))
    for column in range(batch.shape[1]):
        statistic, critical = _homogeneity(batch[:, column], legacy[:, column])
        assert statistic < critical, (column, statistic, critical)
    for sample in (batch, legacy):
        assert abs(sample[:, 0].mean() - 0.5) < 4 * math.sqrt(0.25 / n)
        erased_share = (sample[:, 1] > 0).mean()
        assert abs(erased_share - 0.5) < 4 * math.sqrt(0.25 / n) + 0.03  # 10 attempts may find no rectangle


def test_erasing_scale_and_ratio_shape_the_rectangles():
    augmentation = Augmentation((256, 128), pad=0, flip=0.0, erasing=1.0, erasing_scale=(0.3, 0.4),
                                erasing_ratio=(1.0, 1.0))
    rectangles = np.array([augmentation.draw(seed)[3:] for seed in range(300)])
    assert np.all(rectangles[:, 2] > 0)
    area = rectangles[:, 2] * rectangles[:, 3] / (256 * 128)
    assert area.min() > 0.28 and area.max() < 0.42
    assert np.all(np.abs(rectangles[:, 2] - rectangles[:, 3]) <= 1)
    with pytest.raises(ValueError, match="erasing_scale"):
        Augmentation(SIZE, pad=0, flip=0.0, erasing=0.5, erasing_scale=(0.5, 0.1))
    with pytest.raises(ValueError, match="erasing_ratio"):
        Augmentation(SIZE, pad=0, flip=0.0, erasing=0.5, erasing_ratio=(0.0, 2.0))


def test_the_loader_reads_erasing_fields_when_the_config_has_them():
    plain = SimpleNamespace(image_size=(256, 128), pad=10, flip=0.5, erasing=0.5)
    assert train_augmentation(plain).erasing_scale == ERASING_SCALE
    custom = SimpleNamespace(**vars(plain), erasing_scale=(0.02, 0.4), erasing_ratio=(0.5, 2.0))
    augmentation = train_augmentation(custom)
    assert augmentation.erasing_scale == (0.02, 0.4) and augmentation.erasing_ratio == (0.5, 2.0)


def test_augmented_batches_keep_the_loaders_length_and_attributes():
    draw = SampleDraw(Augmentation(SIZE, pad=2, flip=0.5, erasing=0.5))
    dataset = [{**draw(_image(), seed), "index": seed} for seed in range(10)]
    loader = torch.utils.data.DataLoader(dataset, batch_size=4)
    batches = AugmentedBatches(loader, BatchAugment(NORM, 2, device="cpu"))
    assert len(batches) == 3 and batches.batch_size == 4
    out = list(batches)
    assert [b["image"].shape[0] for b in out] == [4, 4, 2]
    assert all("augment" not in b and b["image"].dtype == torch.float32 for b in out)
    assert torch.equal(out[0]["image"][1], build_train_transform(SIZE, NORM, pad=2, flip=0.5, erasing=0.5)(_image(), 1))
