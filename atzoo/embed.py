"""Embeddings of anyone's images with a packaged model, written as a features file.

When every image follows the AT-USTC naming (``pNNN-dNN-cNN/camNN-fF-NNNN.jpg``) the person,
clothes, camera and flag columns are filled from the names, so ``atzoo eval-features`` can
evaluate the file directly. Otherwise the labels are -1 and only ``paths`` identifies the rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterable, Sequence

import numpy as np

from atzoo.data.layout import FILE_PATTERN, FOLDER_PATTERN, IMAGE_EXTENSIONS
from atzoo.errors import AtzooError
from atzoo.formats.special import refuse_special
from atzoo.io import atomic_path
from atzoo.protocol import CAMERAS, FLAGS

UNLABELLED = -1


@dataclass(frozen=True)
class EmbedResult:
    path: Path
    count: int
    shape: tuple[int, ...]
    labelled: bool


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


def labels_from_names(paths: Sequence[Path]) -> tuple[np.ndarray, ...] | None:
    """(pid, clothes, camera, flag) parsed from AT-USTC names, or None unless every path has one."""
    columns: list[tuple[int, int, int, int]] = []
    for path in paths:
        folder, name = FOLDER_PATTERN.match(path.parent.name), FILE_PATTERN.match(path.name)
        if folder is None or name is None:
            return None
        camera, flag = int(name.group(1)), int(name.group(2))
        if camera not in CAMERAS or flag not in FLAGS:
            return None
        columns.append((int(folder.group(1)), int(folder.group(3)), camera, flag))
    return tuple(np.asarray(column, dtype=np.int64) for column in zip(*columns))


def embed_images(model, paths: Sequence[Path], input_size: tuple[int, int],
                 normalization: tuple[tuple[float, ...], tuple[float, ...]], *, batch_size: int = 64,
                 device: str = "cpu", progress: bool = True) -> np.ndarray:
    """Embeddings (N, D) or (N, 6, D), float32, of `paths` in order, with the eval transform."""
    import torch
    from tqdm.auto import tqdm

    from atzoo.data.images import load_image
    from atzoo.data.transforms import build_eval_transform

    if batch_size < 1:
        raise AtzooError(f"batch size must be at least 1, got {batch_size}")
    transform = build_eval_transform(tuple(input_size), normalization)
    model = model.to(device).eval()
    chunks = []
    with torch.no_grad(), tqdm(total=len(paths), desc="embed", unit="img", disable=not progress,
                                leave=False, dynamic_ncols=True) as bar:
        for start in range(0, len(paths), batch_size):
            batch = torch.stack([transform(load_image(p)) for p in paths[start:start + batch_size]])
            chunks.append(model(batch.to(device)).float().cpu())
            bar.update(len(batch))
    return torch.cat(chunks).numpy()


def _write_unlabelled(out: Path, feats: np.ndarray, paths: Sequence[Path]) -> None:
    """A features file whose labels are -1: `save_features` rightly refuses those for evaluation."""
    from atzoo.evaluation.inputs import value_problem

    problem = value_problem(feats)
    if problem:
        raise AtzooError(f"not writing {out}: the embeddings are unusable: {problem}")
    labels = np.full(len(paths), UNLABELLED, dtype=np.int64)
    arrays = {"feats": feats, "pid": labels, "clothes": labels, "camera": labels, "flag": labels,
              "paths": np.asarray([str(p) for p in paths])}
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)


def embed(model_ref: str | os.PathLike, inputs: Iterable[str | os.PathLike], out: str | os.PathLike, *,
          batch_size: int = 64, device: str = "cpu", progress: bool = True, registry=None,
          overwrite: bool = False) -> EmbedResult:
    """Embed images with a package (folder or Hub id) and write a ``.npz`` features file. An existing
    `out` is replaced only with `overwrite`, and only when it is a features file."""
    from atzoo.evaluation.features_file import is_features_file, save_features
    from atzoo.outputs import check_output_file
    from atzoo.package import load

    out = Path(out)
    if out.suffix != ".npz":
        raise AtzooError(f"--out {out} must end in .npz (a features file)")
    inputs = list(inputs)
    paths = collect_images(inputs)
    local_model = [model_ref] if Path(model_ref).exists() else []
    check_output_file(out, "a features file", inputs=[*local_model, *inputs], overwrite=overwrite,
                      is_own=is_features_file)
    model = load(model_ref, registry=registry, device=device)
    config = model.atzoo_config
    feats = embed_images(model, paths, tuple(config["input_size"]), tuple(tuple(v) for v in config["normalization"]),
                         batch_size=batch_size, device=device, progress=progress)
    labels = labels_from_names(paths)
    if labels is None:
        _write_unlabelled(out, feats, paths)
    else:
        save_features(out, feats, *labels, paths=[str(p) for p in paths])
    return EmbedResult(out, len(paths), tuple(feats.shape), labels is not None)
