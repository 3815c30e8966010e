"""Image transforms for re-identification, with every random choice drawn from a per-sample seed.

Train: resize to (H, W) -> horizontal flip (p=flip) -> zero-pad by `pad` and random-crop back to
(H, W) -> to float in [0, 1] -> normalise -> random erasing (p=erasing), the FastReID / torchreid
recipe. The erased rectangle is filled with 0 after normalisation, i.e. with the mean colour.

The random ops take their randomness from a numpy `Generator` seeded with the sample's seed (which
the sampler hands out), never from a global RNG: the same (image, seed) gives the same tensor in
any worker process, so a run's augmentation does not depend on `num_workers` and is reproduced
when it resumes.
"""

from __future__ import annotations

import math
import numpy as np
import torch
from PIL import Image

ImageInput = Image.Image | np.ndarray | torch.Tensor
Normalization = tuple[tuple[float, ...], tuple[float, ...]]

ERASING_SCALE = (0.02, 0.33)
ERASING_RATIO = (0.3, 3.3)
ERASING_ATTEMPTS = 10


def resize_image(image: Image.Image, image_size: tuple[int, int]) -> np.ndarray:
    """`image` resized to (H, W) with PIL's antialiased bilinear filter, as a uint8 (H, W, 3) array.

    The image cache stores exactly this, so cached and freshly decoded images are identical.
    """
    height, width = image_size
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.array(image.convert("RGB"), dtype=np.uint8)


def to_uint8_hwc(image: ImageInput, image_size: tuple[int, int]) -> np.ndarray:
    """A PIL image, a uint8 (H, W, 3) array or a uint8 (3, H, W) tensor as a uint8 (H, W, 3) array
    of the requested size."""
    if isinstance(image, torch.Tensor):
        image = image.permute(1, 2, 0).numpy()
    if isinstance(image, np.ndarray) and image.shape[:2] != tuple(image_size):
        image = Image.fromarray(image)
    if isinstance(image, Image.Image):
        image = resize_image(image, image_size)
    return image


class _Normalize:
    """uint8 (H, W, 3) -> normalised float32 (3, H, W) tensor.

    Done in numpy: torch's intra-op threading makes such small per-image ops several times
    slower in the main process (num_workers=0).
    """

    def __init__(self, normalization: Normalization) -> None:
        mean, std = normalization
        if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
            raise ValueError(f"normalization must be ((3 means), (3 positive stds)), got {normalization!r}")
        self.scale = (1.0 / (255.0 * np.asarray(std, dtype=np.float32))).astype(np.float32)
        self.shift = (np.asarray(mean, dtype=np.float32) / np.asarray(std, dtype=np.float32)).astype(np.float32)

    def __call__(self, pixels: np.ndarray) -> torch.Tensor:
        normalised = pixels.astype(np.float32) * self.scale - self.shift
        return torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1)))


class EvalTransform:
    """Resize and normalise; no randomness."""

    def __init__(self, image_size: tuple[int, int], normalization: Normalization) -> None:
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.normalize = _Normalize(normalization)

    def __call__(self, image: ImageInput, seed: int | None = None) -> torch.Tensor:
        return self.normalize(to_uint8_hwc(image, self.image_size))


class TrainTransform:
    """Resize, flip, pad + random crop, normalise, random erasing; randomness from `seed`."""

    def __init__(self, image_size: tuple[int, int], normalization: Normalization, *, pad: int, flip: float,
                 erasing: float, erasing_scale: tuple[float, float] = ERASING_SCALE,
                 erasing_ratio: tuple[float, float] = ERASING_RATIO) -> None:
        if pad < 0 or not 0 <= flip <= 1 or not 0 <= erasing <= 1:
            raise ValueError(f"pad must be >= 0 and flip/erasing probabilities in [0, 1], "
                             f"got pad={pad}, flip={flip}, erasing={erasing}")
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.normalize = _Normalize(normalization)
        self.pad, self.flip, self.erasing = int(pad), float(flip), float(erasing)
        self.erasing_scale = (float(erasing_scale[0]), float(erasing_scale[1]))
        self.erasing_ratio = (float(erasing_ratio[0]), float(erasing_ratio[1]))

    def __call__(self, image: ImageInput, seed: int) -> torch.Tensor:
        rng = np.random.default_rng(int(seed))
        # One draw per decision, taken whatever the probabilities, so later draws never shift.
        flip_draw, erase_draw = rng.random(2)
        pixels = to_uint8_hwc(image, self.image_size)
        if flip_draw < self.flip:
            pixels = pixels[:, ::-1]
        if self.pad:
            pixels = _pad_and_crop(pixels, self.pad, rng)
        tensor = self.normalize(pixels)
        if erase_draw < self.erasing:
            _erase(tensor, rng, self.erasing_scale, self.erasing_ratio)
        return tensor


def _pad_and_crop(pixels: np.ndarray, pad: int, rng: np.random.Generator) -> np.ndarray:
    height, width, _ = pixels.shape
    top, left = (int(v) for v in rng.integers(0, 2 * pad + 1, size=2))
    padded = np.zeros((height + 2 * pad, width + 2 * pad, 3), dtype=np.uint8)
    padded[pad:pad + height, pad:pad + width] = pixels
    return padded[top:top + height, left:left + width]


def _erase(tensor: torch.Tensor, rng: np.random.Generator, scale: tuple[float, float] = ERASING_SCALE,
           ratio_range: tuple[float, float] = ERASING_RATIO) -> None:
    """torchvision's RandomErasing rectangle search (area share and aspect ratio), in place."""
    _, height, width = tensor.shape
    area = height * width
    log_low, log_high = math.log(ratio_range[0]), math.log(ratio_range[1])
    for _ in range(ERASING_ATTEMPTS):
        share, log_ratio = rng.uniform(*scale), rng.uniform(log_low, log_high)
        ratio = math.exp(log_ratio)
        h, w = int(round(math.sqrt(area * share * ratio))), int(round(math.sqrt(area * share / ratio)))
        if 0 < h < height and 0 < w < width:
            top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
            tensor[:, top:top + h, left:left + w] = 0.0
            return


def build_train_transform(image_size: tuple[int, int], normalization: Normalization, *, pad: int, flip: float,
                          erasing: float, erasing_scale: tuple[float, float] = ERASING_SCALE,
                          erasing_ratio: tuple[float, float] = ERASING_RATIO) -> TrainTransform:
    """The training augmentation; call it as `transform(image, seed)`. ``erasing_scale``: (min, max)
    share of the area erased; ``erasing_ratio``: (min, max) aspect ratio of the rectangle."""
    return TrainTransform(image_size, normalization, pad=pad, flip=flip, erasing=erasing,
                          erasing_scale=erasing_scale, erasing_ratio=erasing_ratio)


def build_eval_transform(image_size: tuple[int, int], normalization: Normalization) -> EvalTransform:
    """Resize and normalise; call it as `transform(image)`."""
    return EvalTransform(image_size, normalization)
