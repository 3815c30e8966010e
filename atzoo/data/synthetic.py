"""A synthetic AT-USTC: procedurally rendered persons in the benchmark's exact layout and flags.

AT-USTC can never be shipped, so this generator is the project's embedded dataset. Every image is
drawn with vectorised numpy from a handful of seeded traits:

- identity (kept across clothes changes): body proportions, skin tone, hair colour and length,
  one accessory (bag, hat or glasses) of a fixed colour;
- clothing (one per capture date): top and bottom colours, patterns, sleeve and leg length;
- camera: background, viewpoint (offset, scale, mirror) and lighting; cameras 9-16 are infrared
  and render the same scene in thermal-like grey levels with more sensor noise;
- frame: small shifts, walking pose, noise.

Same-clothes matching is therefore easy, clothes-changed matching has to rely on the weaker body
cues, and cross-modality matching loses colour: the scenarios order as they do on the real data.
Every random draw comes from a generator seeded by (seed, what, ids...), so a file's bytes depend
only on the configuration, not on the order or the process that wrote it.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from PIL import Image

from atzoo.errors import AtzooError
from atzoo.io import atomic_path, permissions_from_umask, write_json_atomic
from atzoo.protocol import IR_CAMERAS, RGB_CAMERAS, TRAIN_FLAG, UNUSED_TEST_FLAG, VAL_FLAG

GENERATOR_VERSION = 1
MANIFEST_NAME = "synthetic.json"
MAX_DATES = 13
IMAGES_PER_TEST_SET = 3
"""Per clip: 3 short-term query, 3 short-term gallery, 3 long-term query, 3 long-term gallery."""

# Test flags per modality, in the order the shuffled frames of a clip receive them.
_RGB_TEST_FLAGS = (2, 6, 3, 7)
_IR_TEST_FLAGS = (4, 8, 5, 9)

# Seed streams: each kind of random draw has its own generator.
_PERSON, _OUTFIT, _CAMERA, _CLIP, _PLAN, _SPLIT = range(6)


class SynthConfigError(AtzooError):
    """The synthetic dataset's settings are out of range."""


class DestinationError(AtzooError):
    """The folder to generate into cannot be used."""


@dataclass(frozen=True)
class SynthConfig:
    """What to generate.

    ids: persons in total, split 1:1 into train and test identities (even, >= 4).
    size: image (height, width) in pixels.
    clothings: capture dates per person, one clothing each (>= 2, so long-term sets exist).
    rgb_cameras / ir_cameras: cameras (of 8 each) that see each (person, clothing).
    frames: images per clip (person, clothing, camera); >= 12 so a test clip can give
        3 + 3 short-term and 3 + 3 long-term query/gallery images, the rest get flag 10.
    val_share: share of the training identities' images held out as validation (flag 1).
    png_share: share of images written as .png instead of .jpg (AT-USTC has both).
    """

    ids: int = 80
    seed: int = 0
    size: tuple[int, int] = (128, 64)
    clothings: int = 3
    rgb_cameras: int = 3
    ir_cameras: int = 3
    frames: int = 13
    val_share: float = 0.2
    png_share: float = 0.05
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        if isinstance(self.size, (list, tuple)):
            object.__setattr__(self, "size", tuple(self.size))
        problems = config_problems(self)
        if problems:
            raise SynthConfigError("invalid synthetic dataset settings: " + "; ".join(problems))

    @property
    def num_clips(self) -> int:
        return self.ids * self.clothings * (self.rgb_cameras + self.ir_cameras)

    @property
    def num_images(self) -> int:
        return self.num_clips * self.frames


def config_problems(config: SynthConfig) -> list[str]:
    """Every out-of-range setting of `config`, worded for the user (empty when valid)."""
    problems = []
    for name in ("ids", "seed", "clothings", "rgb_cameras", "ir_cameras", "frames", "jpeg_quality"):
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool):
            return [f"{name}={value!r}: expected a whole number"]
    for name in ("val_share", "png_share"):
        value = getattr(config, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return [f"{name}={value!r}: expected a number"]
    if config.seed < 0:
        problems.append(f"seed={config.seed}: expected a number >= 0")
    if config.ids < 4 or config.ids % 2 or config.ids > 999:
        problems.append(f"ids={config.ids!r}: expected an even number of persons from 4 to 998 "
                        "(split 1:1 into train and test)")
    size = config.size
    whole = isinstance(size, tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in size)
    if not whole or len(size) != 2:
        problems.append(f"size={size!r}: expected (height, width) in pixels")
    elif not (32 <= size[0] <= 1024 and 16 <= size[1] <= 1024):
        problems.append(f"size={size[0]}x{size[1]}: expected a height of 32-1024 and a width of 16-1024 pixels")
    if not 2 <= config.clothings <= MAX_DATES:
        problems.append(f"clothings={config.clothings}: expected 2-{MAX_DATES} (one per capture date)")
    for name in ("rgb_cameras", "ir_cameras"):
        if not 2 <= getattr(config, name) <= 8:
            problems.append(f"{name}={getattr(config, name)}: expected 2-8 (every scenario needs a second camera)")
    if not 4 * IMAGES_PER_TEST_SET <= config.frames <= 1000:
        problems.append(f"frames={config.frames}: expected 12-1000 images per clip")
    if not 0 <= config.val_share < 1:
        problems.append(f"val_share={config.val_share}: expected a share in [0, 1)")
    if not 0 <= config.png_share <= 1:
        problems.append(f"png_share={config.png_share}: expected a share in [0, 1]")
    if not 50 <= config.jpeg_quality <= 100:
        problems.append(f"jpeg_quality={config.jpeg_quality}: expected 50-100")
    return problems


TINY = SynthConfig(ids=10, size=(32, 16), clothings=2, rgb_cameras=2, ir_cameras=2, frames=13)
"""For unit tests: about 1,000 images, a second to generate, still complete and valid."""

DEFAULT = SynthConfig()
"""What the quickstart trains on: 80 persons at 128x64, about 7,500 training images."""


def _rng(config: SynthConfig, stream: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, stream, *keys])


# ---------------------------------------------------------------------------------------------
# The plan: which files exist, with which flags.


@dataclass(frozen=True)
class Clip:
    """The images one camera took of one person in one clothing on one date."""

    person: int
    date: int
    clothing: int
    camera: int
    frames: tuple[int, ...]
    flags: tuple[int, ...]
    extensions: tuple[str, ...]

    @property
    def folder(self) -> str:
        return f"p{self.person:03d}-d{self.date:02d}-c{self.clothing:02d}"

    @property
    def infrared(self) -> bool:
        return self.camera in IR_CAMERAS

    def file_names(self) -> list[str]:
        return [f"cam{self.camera:02d}-f{flag}-{frame:04d}{ext}"
                for frame, flag, ext in zip(self.frames, self.flags, self.extensions)]


def split_identities(config: SynthConfig) -> tuple[list[int], list[int]]:
    """(train, test) person ids, a seeded half each."""
    persons = _rng(config, _SPLIT).permutation(np.arange(1, config.ids + 1))
    half = config.ids // 2
    return sorted(int(p) for p in persons[:half]), sorted(int(p) for p in persons[half:])


def _test_flags(rng: np.random.Generator, frames: int, infrared: bool) -> list[int]:
    flags = [UNUSED_TEST_FLAG] * frames
    order = rng.permutation(frames)
    for position, flag in enumerate(_IR_TEST_FLAGS if infrared else _RGB_TEST_FLAGS):
        for index in order[position * IMAGES_PER_TEST_SET:(position + 1) * IMAGES_PER_TEST_SET]:
            flags[index] = flag
    return flags


def _person_clips(config: SynthConfig, person: int, is_train: bool) -> list[Clip]:
    rng = _rng(config, _PLAN, person)
    dates = np.sort(rng.choice(np.arange(1, MAX_DATES + 1), size=config.clothings, replace=False))
    drafts: list[tuple[int, int, int, tuple[int, ...], list[int], tuple[str, ...]]] = []
    for clothing, date in enumerate(dates, start=1):
        cameras = np.concatenate([np.sort(rng.choice(RGB_CAMERAS, config.rgb_cameras, replace=False)),
                                  np.sort(rng.choice(IR_CAMERAS, config.ir_cameras, replace=False))])
        for camera in cameras:
            step = int(rng.integers(1, 6))
            start = int(rng.integers(0, 10000 - step * config.frames))
            frames = tuple(start + step * np.arange(config.frames))
            extensions = tuple(str(e) for e in np.where(rng.random(config.frames) < config.png_share, ".png", ".jpg"))
            flags = ([TRAIN_FLAG] * config.frames if is_train
                     else _test_flags(rng, config.frames, int(camera) in IR_CAMERAS))
            drafts.append((int(date), clothing, int(camera), tuple(int(f) for f in frames), flags, extensions))
    if is_train:
        total = len(drafts) * config.frames
        held_out = rng.choice(total, size=round(config.val_share * total), replace=False)
        for index in held_out:
            drafts[index // config.frames][4][index % config.frames] = VAL_FLAG
    return [Clip(person, date, clothing, camera, frames, tuple(flags), extensions)
            for date, clothing, camera, frames, flags, extensions in drafts]


def plan_clips(config: SynthConfig) -> list[Clip]:
    """Every clip of the dataset with its file names' frames, flags and extensions."""
    train, _ = split_identities(config)
    train_set = set(train)
    return [clip for person in range(1, config.ids + 1) for clip in _person_clips(config, person, person in train_set)]


# ---------------------------------------------------------------------------------------------
# Traits.


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    """One HSV colour (all in [0, 1]) as RGB in [0, 255]."""
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.asarray(rgb, dtype=np.float32) * 255


def _luminance(colour: np.ndarray) -> float:
    return float(colour @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32))


def _grey(level: float) -> np.ndarray:
    return np.full(3, np.clip(level, 0, 255), dtype=np.float32)


ACCESSORIES = ("bag", "hat", "glasses")
HAIR_COLOURS = np.asarray([(25, 20, 18), (60, 38, 25), (110, 70, 40), (200, 165, 100), (150, 145, 140),
                           (140, 60, 30), (35, 30, 45)], dtype=np.float32)


@dataclass(frozen=True)
class Person:
    """Traits that survive a change of clothes. Lengths are in units of body height."""

    height: float
    shoulder: float
    waist: float
    head: float
    leg: float
    limb: float
    skin: np.ndarray
    skin_ir: float
    hair: np.ndarray
    hair_ir: float
    hair_length: float
    accessory: str
    accessory_colour: np.ndarray
    accessory_ir: float
    accessory_side: int


def person_traits(config: SynthConfig, person: int) -> Person:
    rng = _rng(config, _PERSON, person)
    shoulder = rng.uniform(0.085, 0.14)
    skin_tone = rng.uniform(0, 1)
    skin = (np.asarray([245, 215, 190]) * (1 - skin_tone) + np.asarray([105, 70, 50]) * skin_tone)
    accessory = ACCESSORIES[int(rng.integers(len(ACCESSORIES)))]
    accessory_colour = _hsv(rng.uniform(), rng.uniform(0.3, 1), rng.uniform(0.15, 0.95))
    accessory_ir = 40 + rng.uniform(-10, 10) if accessory == "glasses" else 70 + 0.4 * _luminance(accessory_colour)
    return Person(
        height=rng.uniform(0.74, 0.9), shoulder=shoulder, waist=shoulder * rng.uniform(0.72, 0.95),
        head=rng.uniform(0.052, 0.075), leg=rng.uniform(0.42, 0.53), limb=rng.uniform(0.022, 0.036),
        skin=(skin * rng.uniform(0.95, 1.05, 3)).clip(0, 255).astype(np.float32),
        skin_ir=rng.uniform(190, 240),
        hair=(HAIR_COLOURS[int(rng.integers(len(HAIR_COLOURS)))] * rng.uniform(0.85, 1.15)).clip(0, 255),
        hair_ir=rng.uniform(55, 105), hair_length=rng.uniform(0.08, 0.4),
        accessory=accessory, accessory_colour=accessory_colour, accessory_ir=float(accessory_ir),
        accessory_side=int(rng.choice([-1, 1])),
    )


PATTERNS = ("plain", "hstripes", "vstripes", "checks")


@dataclass(frozen=True)
class Garment:
    """A top or a bottom: two colours (the second only for patterns), a pattern, a coverage.

    coverage: the share of the arm (top) or leg (bottom) that the garment covers.
    """

    colours: tuple[np.ndarray, np.ndarray]
    greys: tuple[float, float]
    pattern: str
    period: float
    phase: float
    coverage: float


@dataclass(frozen=True)
class Outfit:
    top: Garment
    bottom: Garment
    shoes: np.ndarray
    shoes_ir: float


def _clothing_colour(rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.25:
        return _grey(rng.uniform(20, 240))
    return _hsv(rng.uniform(), rng.uniform(0.35, 1), rng.uniform(0.25, 0.95))


def _garment(rng: np.random.Generator, pattern_weights: Sequence[float], coverages: Sequence[float]) -> Garment:
    first = _clothing_colour(rng)
    second = _clothing_colour(rng)
    while abs(_luminance(first) - _luminance(second)) < 70:
        second = _clothing_colour(rng)
    material = rng.uniform(-25, 25)
    grey_first, grey_second = (float(np.clip(110 + material + 0.5 * (_luminance(c) - 128), 50, 185))
                               for c in (first, second))
    return Garment(colours=(first, second), greys=(grey_first, grey_second),
                   pattern=PATTERNS[int(rng.choice(len(PATTERNS), p=pattern_weights))],
                   period=rng.uniform(0.035, 0.08), phase=rng.uniform(0, 2 * np.pi),
                   coverage=float(rng.choice(coverages)))


def outfit_traits(config: SynthConfig, person: int, clothing: int) -> Outfit:
    rng = _rng(config, _OUTFIT, person, clothing)
    top = _garment(rng, (0.4, 0.25, 0.15, 0.2), (1.0, 1.0, 0.45))
    bottom = _garment(rng, (0.8, 0.05, 0.05, 0.1), (1.0, 1.0, 1.0, 0.5))
    shoes = _hsv(rng.uniform(), rng.uniform(0, 0.6), rng.uniform(0.05, 0.9))
    return Outfit(top, bottom, shoes, float(45 + 0.2 * _luminance(shoes)))


@dataclass(frozen=True)
class CameraView:
    """Where a camera sees people and how it renders them (`foot`, `x_offset` in canvas heights)."""

    camera: int
    infrared: bool
    x_offset: float
    scale: float
    foot: float
    mirror: bool
    brightness: float
    contrast: float
    tint: np.ndarray
    noise: float


def camera_view(config: SynthConfig, camera: int) -> CameraView:
    rng = _rng(config, _CAMERA, camera)
    infrared = camera in IR_CAMERAS
    return CameraView(
        camera=camera, infrared=infrared, x_offset=rng.uniform(-0.05, 0.05), scale=rng.uniform(0.86, 1.06),
        foot=rng.uniform(0.94, 0.99), mirror=bool(rng.random() < 0.5),
        brightness=rng.uniform(-15, 15) if infrared else rng.uniform(-25, 25),
        contrast=rng.uniform(0.85, 1.15) if infrared else rng.uniform(0.8, 1.15),
        tint=np.ones(3, np.float32) if infrared else rng.uniform(0.88, 1.12, 3).astype(np.float32),
        noise=rng.uniform(6, 10) if infrared else rng.uniform(2, 5),
    )


def _smooth_field(rng: np.random.Generator, y: np.ndarray, x: np.ndarray, amplitude: float) -> np.ndarray:
    field = np.zeros(np.broadcast_shapes(y.shape, x.shape), np.float32)
    for _ in range(3):
        fy, fx = rng.uniform(0.5, 3, 2)
        field += np.sin(2 * np.pi * (fy * y + fx * x) + rng.uniform(0, 2 * np.pi)).astype(np.float32)
    return field * (amplitude / 3)


def camera_background(config: SynthConfig, camera: int) -> np.ndarray:
    """The camera's empty scene, (H, W, 3) float32: wall and floor with texture and a few objects."""
    rng = _rng(config, _CAMERA + 100, camera)
    height, width = config.size
    y = ((np.arange(height) + 0.5) / height)[:, None]
    x = ((np.arange(width) + 0.5) / width)[None, :]
    horizon = rng.uniform(0.5, 0.78)
    infrared = camera in IR_CAMERAS
    if infrared:
        wall, floor = _grey(rng.uniform(30, 70)), _grey(rng.uniform(20, 55))
    else:
        hue = rng.uniform()
        wall = _hsv(hue, rng.uniform(0.05, 0.4), rng.uniform(0.45, 0.9))
        floor = _hsv((hue + rng.uniform(-0.2, 0.2)) % 1, rng.uniform(0.05, 0.3), rng.uniform(0.3, 0.65))
    is_floor = (y > horizon)[..., None]
    image = np.where(is_floor, floor, wall) + np.zeros((height, width, 1), np.float32)
    image += (is_floor * -30 * (y - horizon)[..., None]).astype(np.float32)
    period = rng.uniform(0.12, 0.3)
    texture = rng.integers(3)
    if texture == 0:
        lines = (np.abs(((x * width / height) / period) % 1 - 0.5) > 0.45) | (np.abs((y / period) % 1 - 0.5) > 0.45)
    elif texture == 1:
        lines = np.abs(((x * width / height) / period) % 1 - 0.5) > 0.4
    else:
        lines = np.abs((y / (period / 2)) % 1 - 0.5) > 0.42
    image -= (lines & ~(y > horizon))[..., None] * rng.uniform(10, 30)
    for _ in range(int(rng.integers(1, 4))):
        x0, y0 = rng.uniform(-0.1, 0.9), rng.uniform(0, horizon)
        inside = (x > x0) & (x < x0 + rng.uniform(0.08, 0.3)) & (y > y0) & (y < y0 + rng.uniform(0.1, 0.5))
        colour = _grey(rng.uniform(20, 110)) if infrared else _hsv(rng.uniform(), rng.uniform(0, 0.7),
                                                                    rng.uniform(0.2, 0.95))
        image = np.where(inside[..., None], colour, image)
    image += _smooth_field(rng, y, x, 8 if infrared else 12)[..., None]
    return image.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Rendering.


def _coverage(distance: np.ndarray, pixel: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage from a signed distance (negative inside), both in body units."""
    return np.clip(0.5 - distance / pixel, 0, 1)


def _pattern(garment: Garment, u: np.ndarray, v: np.ndarray) -> np.ndarray | None:
    if garment.pattern == "plain":
        return None
    horizontal = np.sin(2 * np.pi * v / garment.period + garment.phase) > 0
    vertical = np.sin(2 * np.pi * u / garment.period + garment.phase) > 0
    return {"hstripes": horizontal, "vstripes": vertical, "checks": horizontal ^ vertical}[garment.pattern]


def _garment_colour(garment: Garment, u: np.ndarray, v: np.ndarray, infrared: bool) -> np.ndarray:
    first, second = (tuple(_grey(g) for g in garment.greys) if infrared else garment.colours)
    pattern = _pattern(garment, u, v)
    if pattern is None:
        return first
    return first + pattern[..., None].astype(np.float32) * (second - first)


Coordinate = float | np.ndarray
"""A position in body units: one for every frame, or an (F, 1, 1) array of per-frame positions."""
Point = tuple[Coordinate, Coordinate]
Bounds = tuple[Coordinate, Coordinate, Coordinate, Coordinate]
DistanceFunction = Callable[[np.ndarray, np.ndarray], Any]
"""(u, v) -> signed distance, or (signed distance, extra) where extra feeds a colour function."""
ColourFunction = Callable[[np.ndarray, np.ndarray, Any], np.ndarray]
Colour = np.ndarray | ColourFunction


class Canvas:
    """A batch of frames with body coordinates, painted shape by shape with anti-aliased edges.

    `u` (F, 1, W) and `v` (F, H, 1) are each pixel's horizontal and vertical position in units of
    body height (v = 0 at the top of the head, 1 at the soles); `pixel` (F, 1, 1) is one pixel's
    size in those units. Each shape is evaluated only inside its bounding box.
    """

    def __init__(self, image: np.ndarray, u: np.ndarray, v: np.ndarray, pixel: np.ndarray):
        self.image, self.u, self.v, self.pixel = image, u, v, pixel

    def _window(self, u0: Coordinate, u1: Coordinate, v0: Coordinate, v1: Coordinate) -> tuple[slice, slice] | None:
        margin = 2 * self.pixel
        rows = np.flatnonzero(((self.v >= v0 - margin) & (self.v <= v1 + margin)).any(axis=0))
        cols = np.flatnonzero(((self.u >= np.minimum(u0, u1) - margin)
                               & (self.u <= np.maximum(u0, u1) + margin)).any(axis=0))
        if rows.size == 0 or cols.size == 0:
            return None
        return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)

    def _paint(self, window: tuple[slice, slice], distance: np.ndarray, colour: np.ndarray) -> None:
        rows, cols = window
        alpha = _coverage(distance, self.pixel)[..., None]
        region = self.image[:, rows, cols]
        region += alpha * (colour - region)

    def fill(self, bounds: Bounds, signed_distance: DistanceFunction, colour: Colour) -> None:
        """Paint where `signed_distance(u, v) < 0`; `colour` is RGB or a function of (u, v, extra)."""
        window = self._window(*bounds)
        if window is None:
            return
        u, v = self.u[:, :, window[1]], self.v[:, window[0], :]
        distance = signed_distance(u, v)
        extra = None
        if isinstance(distance, tuple):
            distance, extra = distance
        self._paint(window, distance, colour(u, v, extra) if callable(colour) else colour)

    def ellipse(self, cu: Coordinate, cv: Coordinate, ru: float, rv: float, colour: Colour,
                below: Coordinate | None = None) -> None:
        def distance(u: np.ndarray, v: np.ndarray) -> np.ndarray:
            q = np.sqrt(((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2)
            inside = (q - 1) * min(ru, rv)
            return inside if below is None else np.maximum(inside, v - below)
        self.fill((cu - ru, cu + ru, cv - rv, cv + rv), distance, colour)

    def box(self, u0: Coordinate, u1: Coordinate, v0: Coordinate, v1: Coordinate, colour: Colour) -> None:
        self.fill((u0, u1, v0, v1), lambda u, v: np.maximum(np.maximum(u0 - u, u - u1), np.maximum(v0 - v, v - v1)),
                  colour)

    def limb(self, a: Point, b: Point, radius: float, colour: Colour) -> None:
        """A capsule from point a to point b; a colour function receives the position t in [0, 1] along it."""
        du, dv = b[0] - a[0], b[1] - a[1]

        def distance(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            t = np.clip(((u - a[0]) * du + (v - a[1]) * dv) / (du * du + dv * dv), 0, 1)
            return np.sqrt((u - a[0] - t * du) ** 2 + (v - a[1] - t * dv) ** 2) - radius, t

        bounds = (np.minimum(a[0], b[0]) - radius, np.maximum(a[0], b[0]) + radius,
                  np.minimum(a[1], b[1]) - radius, np.maximum(a[1], b[1]) + radius)
        self.fill(bounds, distance, colour)


@dataclass(frozen=True)
class Poses:
    """Per-frame jitter, each an (F, 1, 1) array."""

    dx: np.ndarray
    dy: np.ndarray
    scale: np.ndarray
    sway: np.ndarray
    arm_swing: np.ndarray
    stride: np.ndarray
    brightness: np.ndarray


def random_poses(rng: np.random.Generator, frames: int) -> Poses:
    phase = rng.uniform(0, 2 * np.pi) + np.arange(frames) * rng.uniform(0.5, 1.5)

    def column(values: np.ndarray) -> np.ndarray:
        return np.asarray(values, np.float32).reshape(frames, 1, 1)

    return Poses(dx=column(rng.normal(0, 0.015, frames)), dy=column(rng.normal(0, 0.008, frames)),
                 scale=column(1 + rng.normal(0, 0.025, frames)), sway=column(rng.normal(0, 0.01, frames)),
                 arm_swing=column(0.03 * np.sin(phase)), stride=column(0.025 * (1 + np.sin(phase))),
                 brightness=column(rng.normal(0, 4, frames)))


def _covered_or_skin(garment: Garment, infrared: bool, skin: np.ndarray) -> ColourFunction:
    """Colour function for a limb: the garment where it covers the limb, skin beyond."""
    def colour(u: np.ndarray, v: np.ndarray, t: np.ndarray) -> np.ndarray:
        return np.where((t < garment.coverage)[..., None], _garment_colour(garment, u, v, infrared), skin)
    return colour


def render_person(person: Person, outfit: Outfit, view: CameraView, background: np.ndarray,
                  poses: Poses) -> np.ndarray:
    """Float (F, H, W, 3) images of one person in one outfit seen by one camera, before lighting."""
    height, width = background.shape[:2]
    frames = poses.dx.shape[0]
    infrared = view.infrared
    y = ((np.arange(height, dtype=np.float32) + 0.5) / height)[None, :, None]
    x = ((np.arange(width, dtype=np.float32) + 0.5 - width / 2) / height)[None, None, :]
    body = np.float32(person.height * view.scale) * poses.scale
    canvas = Canvas(image=np.broadcast_to(background, (frames, height, width, 3)).copy(),
                    u=(x - view.x_offset - poses.dx) / body * (-1 if view.mirror else 1),
                    v=(y - (view.foot + poses.dy - body)) / body, pixel=1 / (height * body))

    skin = _grey(person.skin_ir) if infrared else person.skin
    hair = _grey(person.hair_ir) if infrared else person.hair
    shoes = _grey(outfit.shoes_ir) if infrared else outfit.shoes

    def top_colour(u, v, _):
        return _garment_colour(outfit.top, u, v, infrared)

    def bottom_colour(u, v, _):
        return _garment_colour(outfit.bottom, u, v, infrared)

    r = person.head
    shoulder_v = 2 * r + 0.03
    hip_v = 1 - person.leg
    hip_u = person.waist - person.limb * 1.3
    for side in (-1, 1):
        foot = (side * (hip_u + poses.stride), 0.975)
        canvas.limb((side * hip_u, hip_v), foot, person.limb * 1.3, _covered_or_skin(outfit.bottom, infrared, skin))
        canvas.ellipse(foot[0] + side * 0.01, 0.985, person.limb * 1.6, 0.018, shoes)
    canvas.box(-person.waist, person.waist, hip_v - 0.03, hip_v + 0.06, bottom_colour)

    def torso(u, v):
        taper = np.clip((v - shoulder_v) / (hip_v - shoulder_v), 0, 1)
        half_width = person.shoulder + (person.waist - person.shoulder) * taper
        return np.maximum(np.abs(u - poses.sway) - half_width, np.maximum(shoulder_v - v, v - hip_v))

    canvas.fill((poses.sway - person.shoulder, poses.sway + person.shoulder, shoulder_v, hip_v), torso, top_colour)

    for side in (-1, 1):
        shoulder = (side * (person.shoulder - person.limb * 0.6) + poses.sway, shoulder_v + person.limb)
        hand = (side * (person.shoulder + 0.025 + side * poses.arm_swing), hip_v + 0.07 - np.abs(poses.arm_swing))
        canvas.limb(shoulder, hand, person.limb, _covered_or_skin(outfit.top, infrared, skin))
        canvas.ellipse(hand[0], hand[1] + 0.01, person.limb * 1.1, person.limb * 1.2, skin)

    head_u = poses.sway * 2
    canvas.box(head_u - 0.35 * r, head_u + 0.35 * r, 1.6 * r, shoulder_v + 0.01, skin)
    if person.hair_length > 2.2 * r:
        for side in (-1, 1):
            canvas.box(head_u + side * 0.55 * r, head_u + side * 1.15 * r, 0.9 * r, person.hair_length, hair)
    canvas.ellipse(head_u, r, 0.82 * r, r, skin)
    canvas.ellipse(head_u, 0.92 * r, 0.9 * r, 0.98 * r, hair, below=0.75 * r)
    _paint_accessory(canvas, person, head_u, shoulder_v, hip_v, infrared)
    return canvas.image


def _paint_accessory(canvas: Canvas, person: Person, head_u: Coordinate, shoulder_v: float, hip_v: float,
                     infrared: bool) -> None:
    colour = _grey(person.accessory_ir) if infrared else person.accessory_colour
    r = person.head
    if person.accessory == "hat":
        canvas.box(head_u - 0.85 * r, head_u + 0.85 * r, -0.3 * r, 0.5 * r, colour)
        canvas.box(head_u - 1.35 * r, head_u + 1.35 * r, 0.38 * r, 0.55 * r, colour)
    elif person.accessory == "glasses":
        canvas.box(head_u - 0.72 * r, head_u + 0.72 * r, 0.8 * r, 1.08 * r, colour)
    else:
        side = person.accessory_side
        centre = side * (person.shoulder + 0.04)
        canvas.limb((-side * person.shoulder * 0.55, shoulder_v), (centre, hip_v - 0.04), 0.009, colour)
        canvas.box(centre - 0.05, centre + 0.05, hip_v - 0.05, hip_v + 0.09, colour)


def _blur(image: np.ndarray) -> np.ndarray:
    """A [1, 2, 1] / 4 blur along height and width, edges repeated."""
    for axis in (1, 2):
        padded = np.concatenate([image.take([0], axis), image, image.take([-1], axis)], axis=axis)
        n = image.shape[axis]

        def shifted(start: int) -> np.ndarray:
            index = [slice(None)] * image.ndim
            index[axis] = slice(start, start + n)
            return padded[tuple(index)]

        image = (shifted(0) + 2 * image + shifted(2)) / 4
    return image


def finish(image: np.ndarray, view: CameraView, poses: Poses, rng: np.random.Generator) -> np.ndarray:
    """Camera lighting, IR blur and sensor noise, in place on `image`; (F, H, W, 3) uint8.

    Infrared scenes are grey, so they are finished on one channel (a third of the work) and
    repeated: their three channels stay exactly equal.
    """
    if view.infrared:
        image = image[..., :1]
    image -= 128
    image *= np.float32(view.contrast)
    image += np.float32(128 + view.brightness) + poses.brightness[..., None]
    if view.infrared:
        image = _blur(image)
    else:
        image *= view.tint
    image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(view.noise)
    np.rint(image, out=image)
    np.clip(image, 0, 255, out=image)
    image = image.astype(np.uint8)
    return np.repeat(image, 3, axis=3) if view.infrared else image


@functools.lru_cache(maxsize=64)
def _camera_setup(config: SynthConfig, camera: int) -> tuple[CameraView, np.ndarray]:
    background = camera_background(config, camera)
    background.flags.writeable = False
    return camera_view(config, camera), background


class Renderer:
    """Renders clips of one configuration, keeping each camera's view and background."""

    def __init__(self, config: SynthConfig):
        self.config = config

    def camera(self, camera: int) -> tuple[CameraView, np.ndarray]:
        """The camera's view and background, computed once per process (the background is read-only)."""
        return _camera_setup(self.config, camera)

    def clip_images(self, person: int, clothing: int, camera: int, frames: int) -> np.ndarray:
        """(frames, H, W, 3) uint8 images of a clip; depends only on the config and the three ids."""
        view, background = self.camera(camera)
        rng = _rng(self.config, _CLIP, person, clothing, camera)
        poses = random_poses(rng, frames)
        image = render_person(person_traits(self.config, person), outfit_traits(self.config, person, clothing),
                              view, background, poses)
        return finish(image, view, poses, rng)


# ---------------------------------------------------------------------------------------------
# Writing.


def _save(array: np.ndarray, path: Path, jpeg_quality: int) -> None:
    image = Image.fromarray(array)
    if path.suffix == ".png":
        image.save(path, format="PNG")
    else:
        image.save(path, format="JPEG", quality=jpeg_quality)


def write_clips(root: Path, config: SynthConfig, clips: Sequence[Clip]) -> int:
    """Render and write `clips` under `root`; returns the number of images written."""
    renderer = Renderer(config)
    written = 0
    for clip in clips:
        folder = root / clip.folder
        folder.mkdir(exist_ok=True)
        images = renderer.clip_images(clip.person, clip.clothing, clip.camera, len(clip.frames))
        for array, name in zip(images, clip.file_names()):
            _save(array, folder / name, config.jpeg_quality)
        written += len(images)
    return written


def _batches(clips: Sequence[Clip], size: int) -> Iterator[list[Clip]]:
    for start in range(0, len(clips), size):
        yield list(clips[start:start + size])


def _write_all(staging: Path, config: SynthConfig, clips: list[Clip], progress: bool, workers: int) -> None:
    from tqdm import tqdm

    with tqdm(total=config.num_images, unit="img", desc="synth", file=sys.stderr, disable=None if progress else True,
              dynamic_ncols=True) as bar:
        if workers <= 1:
            for batch in _batches(clips, 8):
                bar.update(write_clips(staging, config, batch))
            return
        for clip in clips:
            (staging / clip.folder).mkdir(exist_ok=True)
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(write_clips, staging, config, batch) for batch in _batches(clips, 24)]
            try:
                for future in futures:
                    bar.update(future.result())
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise


def default_workers(config: SynthConfig) -> int:
    """One process for small datasets (start-up would cost more than it saves), else every core."""
    if config.num_images < 5000:
        return 1
    return max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 8))


def _check_destination(root: Path, overwrite: bool) -> None:
    """The output rule (`atzoo.outputs`): a new or empty folder, or with `overwrite` a folder this
    generator wrote (its manifest and person folders only), so a typo cannot delete real data."""
    from atzoo.outputs import SYNTHETIC_DATASET, OutputError, check_output_folder

    try:
        check_output_folder(root, SYNTHETIC_DATASET, overwrite=overwrite)
    except OutputError as error:
        raise DestinationError(str(error)) from None


def _move_into_place(staging: Path, root: Path) -> None:
    """Rename the finished dataset to `root` (`atzoo.outputs.replace_folder`: the old one stays until then)."""
    from atzoo.outputs import replace_folder

    replace_folder(staging, root)


def publish_dataset(root: str | os.PathLike, write: Callable[[Path], None], manifest: dict, *,
                    overwrite: bool = False) -> Path:
    """Run `write(staging)` in a hidden sibling folder, add `synthetic.json` (`manifest`) and rename
    the finished folder to `root`; `root` never holds a partial dataset, and with `overwrite=True`
    an existing synthetic `root` is replaced only once the new one is complete."""
    root = Path(root)
    _check_destination(root, overwrite)
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".partial", dir=root.parent))
    try:
        os.chmod(staging, permissions_from_umask(executable=True))
        write(staging)
        write_json_atomic(staging / MANIFEST_NAME, manifest)
        _check_destination(root, overwrite)
        _move_into_place(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def generate(root: str | os.PathLike, config: SynthConfig = DEFAULT, *, overwrite: bool = False,
             progress: bool = True, workers: int | None = None) -> Path:
    """Write a synthetic AT-USTC under `root` and return its path.

    The dataset is built in a hidden sibling folder and renamed into place when complete, so
    `root` never holds a partial dataset; with `overwrite=True` an existing `root` is replaced
    only after the new one is finished. `root` also gets `synthetic.json` (the settings), which
    the AT-USTC reader ignores.
    """
    clips = plan_clips(config)

    def write(staging: Path) -> None:
        _write_all(staging, config, clips, progress, default_workers(config) if workers is None else workers)

    return publish_dataset(root, write, {"generator": "atzoo.data.synthetic", "version": GENERATOR_VERSION,
                                         "config": asdict(config), "images": config.num_images},
                           overwrite=overwrite)


# ---------------------------------------------------------------------------------------------
# A contact sheet for the documentation.


def contact_sheet(config: SynthConfig = DEFAULT, persons: Sequence[int] = (1, 2, 3, 4)) -> np.ndarray:
    """One row per person: two clothings, each seen by two RGB cameras and one IR camera.

    Returns an (rows * H, 6 * W, 3) uint8 image with a 2-pixel gap between tiles.
    """
    renderer = Renderer(config)
    height, width = config.size
    gap = 2
    sheet = np.full((len(persons) * (height + gap) - gap, 6 * (width + gap) - gap, 3), 255, np.uint8)
    for row, person in enumerate(persons):
        tiles = [renderer.clip_images(person, clothing, camera, 1)[0]
                 for clothing in (1, 2) for camera in (RGB_CAMERAS[0], RGB_CAMERAS[3], IR_CAMERAS[1])]
        for column, tile in enumerate(tiles):
            top, left = row * (height + gap), column * (width + gap)
            sheet[top:top + height, left:left + width] = tile
    return sheet


def save_contact_sheet(path: str | os.PathLike, config: SynthConfig = DEFAULT,
                       persons: Sequence[int] = (1, 2, 3, 4)) -> Path:
    """Write `contact_sheet(config, persons)` to `path` as a PNG (atomically)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(contact_sheet(config, persons)).save(tmp, format="PNG", optimize=True)
    return path


def with_overrides(config: SynthConfig, **overrides: Any) -> SynthConfig:
    """`config` with the given settings replaced (None values are ignored)."""
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})
