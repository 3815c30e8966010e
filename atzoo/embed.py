"""Embeddings of anyone's images with a model package or a run folder, written as a features file.

Every image that follows the AT-USTC naming (``pNNN-dNN-cNN/camNN-fF-NNNN.jpg``) gets its person,
clothes, camera and flag from its name; the others get -1 and are listed by name in the result
(`EmbedResult.unlabelled`). When every image is labelled, ``atzoo eval-features`` evaluates the
file directly; ``paths`` identifies every row either way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Iterable, Sequence

import numpy as np

from atzoo.data.layout import FILE_PATTERN, FOLDER_PATTERN, IMAGE_EXTENSIONS
from atzoo.errors import AtzooError
from atzoo.formats.special import refuse_special
from atzoo.io import atomic_path
from atzoo.protocol import CAMERAS, FLAGS

if TYPE_CHECKING:
    from atzoo.registry import Registry

UNLABELLED = -1


@dataclass(frozen=True)
class EmbedResult:
    path: Path
    count: int
    shape: tuple[int, ...]
    unlabelled: tuple[Path, ...] = ()
    """Images whose names do not follow the AT-USTC pattern: their labels are -1."""

    @property
    def labelled(self) -> bool:
        """Every image has labels, so the file can be evaluated."""
        return not self.unlabelled


@dataclass(frozen=True)
class EmbeddingModel:
    """A model in eval mode with the input size and normalisation its images need."""

    model: object
    input_size: tuple[int, int]
    normalization: tuple[tuple[float, ...], tuple[float, ...]]


def collect_images(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Image files named directly, and those found (recursively, sorted) in folders. A FIFO, socket or
    device among them is refused before anything opens it."""
    images: list[Path] = []
    for item in inputs:
        path = Path(item)
        refuse_special(path, follow_links=True)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.name.lower().endswith(IMAGE_EXTENSIONS))
            for image in found:
                refuse_special(image, follow_links=True)
            images += [p for p in found if p.is_file()]
        elif path.is_file():
            images.append(path)
        else:
            raise AtzooError(f"{path}: no such image or folder")
    if not images:
        raise AtzooError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {', '.join(map(str, inputs))}")
    return images


def label_from_name(path: Path) -> tuple[int, int, int, int] | None:
    """(pid, clothes, camera, flag) from an AT-USTC name, or None when ``path`` does not follow it."""
    folder, name = FOLDER_PATTERN.match(path.parent.name), FILE_PATTERN.match(path.name)
    if folder is None or name is None:
        return None
    camera, flag = int(name.group(1)), int(name.group(2))
    if camera not in CAMERAS or flag not in FLAGS:
        return None
    return int(folder.group(1)), int(folder.group(3)), camera, flag


def labels_from_names(paths: Sequence[Path]) -> tuple[tuple[np.ndarray, ...], list[Path]]:
    """The (pid, clothes, camera, flag) columns parsed from AT-USTC names, -1 in every column of an
    image that does not follow them, and the list of those images."""
    columns = np.full((4, len(paths)), UNLABELLED, dtype=np.int64)
    unlabelled = []
    for row, path in enumerate(paths):
        label = label_from_name(path)
        if label is None:
            unlabelled.append(path)
        else:
            columns[:, row] = label
    return tuple(columns), unlabelled


def embed_images(model: Any, paths: Sequence[Path], input_size: tuple[int, int],
                 normalization: tuple[tuple[float, ...], tuple[float, ...]], *, batch_size: int = 64,
                 device: str = "cpu", progress: bool = True) -> np.ndarray:
    """Embeddings (N, D) or (N, 6, D), float32, of `paths` in order, with the eval transform."""
    import torch
    from tqdm.auto import tqdm

    from atzoo.data.images import load_image
    from atzoo.data.transforms import build_eval_transform

    if batch_size < 1:
        raise AtzooError(f"batch size must be at least 1, got {batch_size}")
    transform = build_eval_transform(input_size, normalization)
    model = model.to(device).eval()
    chunks = []
    with torch.no_grad(), tqdm(total=len(paths), desc="embed", unit="img", disable=None if progress else True,
                                leave=False, dynamic_ncols=True) as bar:
        for start in range(0, len(paths), batch_size):
            batch = torch.stack([transform(load_image(p)) for p in paths[start:start + batch_size]])
            chunks.append(model(batch.to(device)).float().cpu())
            bar.update(len(batch))
    return torch.cat(chunks).numpy()


def _write_with_unlabelled(out: Path, feats: np.ndarray, labels: tuple[np.ndarray, ...], paths: Sequence[Path]) -> None:
    """A features file with -1 labels on some rows: `save_features` rightly refuses those for evaluation."""
    from atzoo.evaluation.inputs import value_problem

    problem = value_problem(feats)
    if problem:
        raise AtzooError(f"not writing {out}: the embeddings are unusable: {problem}")
    arrays: dict[str, Any] = {"feats": feats, **dict(zip(("pid", "clothes", "camera", "flag"), labels)),
              "paths": np.asarray([str(p) for p in paths])}
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)


def _is_run_dir(path: Path) -> bool:
    from atzoo.io import read_json_checked
    from atzoo.package import RUN_KIND, config_kind
    from atzoo.runner.rundir import CONFIG

    if not (path / CONFIG).is_file():
        return False
    config = read_json_checked(path / CONFIG, AtzooError)
    return config_kind(config) == RUN_KIND


def load_embedding_model(model_ref: str | os.PathLike, *, registry: Registry | None = None,
                         device: str = "cpu") -> EmbeddingModel:
    """A model package (folder or Hub id) or a finished run folder (``atzoo train``), in eval mode."""
    from atzoo.hub import load

    path = Path(model_ref)
    if path.is_dir() and _is_run_dir(path):
        import torch

        from atzoo.registry import load_registry
        from atzoo.runner.evaluation import load_run_model
        from atzoo.runner.rundir import MODEL, open_run_dir

        run = open_run_dir(path, need=(MODEL,))
        model, recipe = load_run_model(run, registry or load_registry(), torch.device(device))
        return EmbeddingModel(model, _size(recipe.input_size), recipe.normalization)
    model = load(model_ref, registry=registry, device=device)
    config = getattr(model, "atzoo_config")  # noqa: B009 - set by build_package_model, unknown to nn.Module's type
    mean, std = config["normalization"]
    return EmbeddingModel(model, _size(config["input_size"]), (tuple(mean), tuple(std)))


def _size(values: Sequence[int]) -> tuple[int, int]:
    height, width = values
    return int(height), int(width)


def embed(model_ref: str | os.PathLike, inputs: Iterable[str | os.PathLike], out: str | os.PathLike, *,
          batch_size: int = 64, device: str = "cpu", progress: bool = True,
          registry: Registry | None = None, overwrite: bool = False) -> EmbedResult:
    """Embed images with a package (folder or Hub id) or a run folder and write a ``.npz`` features file.
    An existing `out` is replaced only with `overwrite`, and only when it is a features file."""
    from atzoo.evaluation.features_file import is_features_file, save_features
    from atzoo.outputs import check_output_file

    out = Path(out)
    if out.suffix != ".npz":
        raise AtzooError(f"--out {out} must end in .npz (a features file)")
    inputs = list(inputs)
    paths = collect_images(inputs)
    local_model = [model_ref] if Path(model_ref).exists() else []
    check_output_file(out, "a features file", inputs=[*local_model, *inputs], overwrite=overwrite,
                      is_own=is_features_file)
    loaded = load_embedding_model(model_ref, registry=registry, device=device)
    feats = embed_images(loaded.model, paths, loaded.input_size, loaded.normalization, batch_size=batch_size,
                         device=device, progress=progress)
    labels, unlabelled = labels_from_names(paths)
    if unlabelled:
        _write_with_unlabelled(out, feats, labels, paths)
    else:
        pid, clothes, camera, flag = labels
        save_features(out, feats, pid, clothes, camera, flag, paths=[str(p) for p in paths])
    return EmbedResult(out, len(paths), tuple(feats.shape), tuple(unlabelled))
