"""The retrieval demo behind the app's Demo tab, without gradio: load a model, check the uploaded
images, rank a gallery against a query with one scenario head.

The bundled gallery is a small synthetic dataset generated on first use into the atzoo cache
folder; AT-USTC images are never shipped, uploaded or shown.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Sequence

import numpy as np
from PIL import Image

from atzoo.data.images import decode_image
from atzoo.errors import AtzooError
from atzoo.protocol import GALLERY_SET_FLAGS, SCENARIO_NAMES

if TYPE_CHECKING:
    import torch

    from atzoo.registry import Registry

MAX_SIDE = 4096
MAX_BYTES = 20 * 1024 * 1024
MAX_GALLERY = 200
GALLERY_VERSION = 1
QUERY_FLAG = 2
ZOO_SEPARATOR = "@"



@dataclass(frozen=True)
class DemoModel:
    """A model in eval mode on the CPU with what its inputs need."""

    model: Any
    input_size: tuple[int, int]
    normalization: tuple[tuple[float, ...], tuple[float, ...]]
    num_heads: int
    source: str

    @property
    def head_names(self) -> list[str]:
        return list(SCENARIO_NAMES) if self.num_heads == len(SCENARIO_NAMES) else ["single output"]


# ---------------------------------------------------------------------------------------------
# models


def zoo_choices(registry: Registry | None = None) -> list[str]:
    """``METHOD@TAG`` of the package shipped with atzoo (first: the demo's default, trained on
    synthetic data only) and of every registered pretrained weights file."""
    from atzoo.zoo import list_pretrained

    return [f"{row['method']}{ZOO_SEPARATOR}{row['tag']}" for row in list_pretrained(registry)]


def local_models() -> dict[str, str]:
    """Label -> folder of the models found on this machine: packages pulled into the Hub cache and
    the newest finished `atzoo quickstart` run in the working folder."""
    from atzoo.zoo import pulled_packages, quickstart_run

    found = [*pulled_packages(), *([run] if (run := quickstart_run()) is not None else [])]
    return {model.label: str(model.path) for model in found}


def _from_config(model: torch.nn.Module, config: dict[str, Any], source: str) -> DemoModel:
    height, width = config["input_size"]
    mean, std = config["normalization"]
    return DemoModel(model=model, input_size=(int(height), int(width)), normalization=(tuple(mean), tuple(std)),
                     num_heads=len(config.get("heads") or [None]), source=source)


def _load_run(path: Path, registry: Registry) -> DemoModel:
    import torch

    from atzoo.runner.evaluation import load_run_model
    from atzoo.runner.rundir import MODEL, open_run_dir

    run = open_run_dir(path, need=("config.json", MODEL))
    model, recipe = load_run_model(run, registry, torch.device("cpu"))
    return DemoModel(model=model, input_size=recipe.input_size, normalization=recipe.normalization,
                     num_heads=len(recipe.heads), source=str(path))


def _config_kind(path: Path) -> str:
    from atzoo.io import read_json
    from atzoo.package import config_kind

    try:
        config = read_json(path / "config.json")
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise AtzooError(f"{path / 'config.json'} cannot be read as JSON ({error})") from None
    return config_kind(config)


def load_local_model(path: str | os.PathLike, registry: Registry | None = None) -> DemoModel:
    """A model package folder (``atzoo export``) or a finished run directory (``atzoo train``)."""
    from atzoo.package import PACKAGE_KIND, build_package_model, read_package
    from atzoo.registry import load_registry

    path = Path(path).expanduser()
    if not path.is_dir():
        raise AtzooError(f"{path}: no such folder; expected a model package or a run directory")
    if not (path / "config.json").is_file():
        raise AtzooError(f"{path} has no config.json; expected a model package (atzoo export) or a run directory")
    registry = registry or load_registry()
    if _config_kind(path) == PACKAGE_KIND:
        package = read_package(path)
        return _from_config(build_package_model(package, registry), package.config, str(path))
    return _load_run(path, registry)


def load_zoo_model(choice: str, registry: Registry | None = None) -> DemoModel:
    """A zoo model named ``METHOD@TAG`` (as listed by :func:`zoo_choices`), hash-checked."""
    from atzoo.zoo import create_model

    method, separator, tag = choice.rpartition(ZOO_SEPARATOR)
    if not separator or not method or not tag:
        raise AtzooError(f"zoo model {choice!r}: expected METHOD{ZOO_SEPARATOR}TAG, e.g. 'uniat{ZOO_SEPARATOR}403k'")
    model = create_model(method, pretrained=tag, registry=registry)
    return _from_config(model, getattr(model, "atzoo_config"), choice)  # noqa: B009 - set by build_package_model


def load_demo_model(reference: str, registry: Registry | None = None) -> DemoModel:
    """A local package or run folder when `reference` is an existing path, else a zoo ``METHOD@TAG``."""
    reference = (reference or "").strip()
    if not reference:
        raise AtzooError("choose a zoo model or give the path of a model package or run directory")
    if Path(reference).expanduser().exists():
        return load_local_model(reference, registry)
    if ZOO_SEPARATOR in reference:
        return load_zoo_model(reference, registry)
    raise AtzooError(f"{reference!r} is neither an existing folder nor a zoo model METHOD{ZOO_SEPARATOR}TAG")


class ModelCache:
    """Loaded demo models by reference, so each request does not rebuild the model."""

    def __init__(self, registry: Registry | None = None, capacity: int = 4) -> None:
        self.registry = registry
        self.capacity = capacity
        self._models: dict[tuple[str, float], DemoModel] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(reference: str) -> tuple[str, float]:
        path = Path(reference).expanduser()
        weights = [path / "model.safetensors"] if path.is_dir() else []
        stamp = max((w.stat().st_mtime for w in weights if w.is_file()), default=0.0)
        return reference.strip(), stamp

    def get(self, reference: str) -> DemoModel:
        key = self._key(reference or "")
        with self._lock:
            if key in self._models:
                return self._models[key]
        model = load_demo_model(reference, self.registry)
        with self._lock:
            if len(self._models) >= self.capacity:
                self._models.pop(next(iter(self._models)))
            self._models[key] = model
        return model


# ---------------------------------------------------------------------------------------------
# images


def _check_dimensions(width: int, height: int, name: str) -> None:
    if width > MAX_SIDE or height > MAX_SIDE:
        raise AtzooError(f"{name} is {width}x{height} pixels; images may be at most {MAX_SIDE} pixels a side")
    if width < 1 or height < 1:
        raise AtzooError(f"{name} has no pixels ({width}x{height})")


def _open_file(path: Path) -> Image.Image:
    name = path.name
    if not path.is_file():
        raise AtzooError(f"{name}: no such image file")
    size = path.stat().st_size
    if size == 0:
        raise AtzooError(f"{name} is empty (0 bytes)")
    if size > MAX_BYTES:
        raise AtzooError(f"{name} is {size / 2**20:.1f} MB; images may be at most {MAX_BYTES // 2**20} MB")
    return decode_image(path, name, error=AtzooError,
                        check_size=lambda width, height: _check_dimensions(width, height, name))


def open_image(image: Any, name: str = "image") -> Image.Image:
    """An RGB image from a path, a PIL image or an (H, W[, 3]) uint8 array, checked for size."""
    if image is None:
        raise AtzooError(f"no {name} was given")
    if isinstance(image, (str, os.PathLike)):
        return _open_file(Path(image))
    if isinstance(image, Image.Image):
        _check_dimensions(*image.size, name)
        return image.convert("RGB")
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
            raise AtzooError(f"{name} has shape {image.shape}; expected (H, W) or (H, W, 3)")
        _check_dimensions(image.shape[1], image.shape[0], name)
        return Image.fromarray(np.ascontiguousarray(image).astype(np.uint8).squeeze()).convert("RGB")
    raise AtzooError(f"{name}: expected an image file, got {type(image).__name__}")


# ---------------------------------------------------------------------------------------------
# the bundled synthetic gallery


def demo_gallery_config():
    """Eight persons at 128x64, two clothings, two RGB and two IR cameras: under a second to draw."""
    from atzoo.data.synthetic import SynthConfig

    return SynthConfig(ids=8, size=(128, 64), clothings=2, rgb_cameras=2, ir_cameras=2, frames=12, png_share=0.0)


def synthetic_gallery_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The bundled synthetic dataset, generated into the cache folder on first use."""
    from atzoo.data.cache import default_cache_dir
    from atzoo.data.synthetic import MANIFEST_NAME, generate

    root = Path(cache_dir or default_cache_dir()) / "demo-gallery" / f"v{GALLERY_VERSION}"
    if not (root / MANIFEST_NAME).is_file():
        with _gallery_lock:
            if not (root / MANIFEST_NAME).is_file():
                generate(root, demo_gallery_config(), overwrite=root.exists(), progress=False, workers=1)
    return root


_gallery_lock = threading.Lock()


@dataclass(frozen=True)
class SyntheticGallery:
    query: Path
    gallery: list[Path]


def synthetic_gallery(cache_dir: str | os.PathLike | None = None) -> SyntheticGallery:
    """A query (first person's day short-term query) and one gallery image per test clip."""
    from atzoo.data import parse_root

    records = parse_root(synthetic_gallery_root(cache_dir))
    test_persons = sorted(set(records.person[np.isin(records.flag, GALLERY_SET_FLAGS)].tolist()))
    paths = records.absolute_paths()
    gallery, seen = [], set()
    for index in np.argsort(records.path):
        clip = (int(records.person[index]), int(records.clothes[index]), int(records.camera[index]))
        if records.flag[index] in GALLERY_SET_FLAGS and clip not in seen:
            seen.add(clip)
            gallery.append(paths[index])
    queries = [paths[i] for i in np.argsort(records.path)
               if records.flag[i] == QUERY_FLAG and records.person[i] == test_persons[0]]
    return SyntheticGallery(query=queries[0], gallery=gallery)


# ---------------------------------------------------------------------------------------------
# ranking


def head_index(model: DemoModel, head: str | None) -> int | None:
    """The output row of `head` for a six-head model; None for a one-output model (any head)."""
    if model.num_heads == 1:
        return None
    if head not in SCENARIO_NAMES:
        raise AtzooError(f"unknown scenario head {head!r}; expected one of {', '.join(SCENARIO_NAMES)}")
    return SCENARIO_NAMES.index(head)


def embed(model: DemoModel, images: Sequence[Image.Image], head: str | None, batch_size: int = 32) -> np.ndarray:
    """L2-normalised embeddings (N, D) of `images` for `head`."""
    import torch

    from atzoo.data.transforms import build_eval_transform

    transform = build_eval_transform(model.input_size, model.normalization)
    index = head_index(model, head)
    chunks = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = torch.stack([transform(np.asarray(image)) for image in images[start:start + batch_size]])
            output = model.model.eval()(batch).float()
            if output.ndim == 3:
                output = output[:, 0 if index is None else index]
            chunks.append(torch.nn.functional.normalize(output, dim=1))
    return torch.cat(chunks).numpy()


def rank_gallery(model: DemoModel, query_image: Any, gallery_images: Sequence[Any],
                 head: str | None = None) -> list[tuple[Image.Image, float]]:
    """Gallery images with their cosine similarity to the query, most similar first."""
    if not gallery_images:
        raise AtzooError("the gallery is empty; upload gallery images or use the bundled synthetic gallery")
    if len(gallery_images) > MAX_GALLERY:
        raise AtzooError(f"the gallery has {len(gallery_images)} images; at most {MAX_GALLERY} are ranked")
    head_index(model, head)
    query = open_image(query_image, "the query image")
    gallery = [open_image(image, _image_name(image, i)) for i, image in enumerate(gallery_images)]
    features = embed(model, [query, *gallery], head)
    similarity = features[1:] @ features[0]
    order = np.argsort(-similarity, kind="stable")
    return [(gallery[i], float(similarity[i])) for i in order]


def _image_name(image: Any, index: int) -> str:
    if isinstance(image, (str, os.PathLike)):
        return Path(image).name
    return f"gallery image {index + 1}"
