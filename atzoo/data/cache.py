"""The dataset fingerprint and an optional cache of decoded, resized images.

Decoding a JPEG costs far more than augmenting a 256x128 image, so on a CPU the data pipeline is
bound by decoding. `ImageCache` decodes and resizes every image once into a flat uint8 file
(N x H x W x 3, memory-mapped) that later epochs, evaluations and runs read directly.

The file is named after a key over the root, the records' order and each file's size and
modification time: any added, removed, resized or rewritten image, or another row order, makes a
new file instead of serving stale pixels. It is written to a temporary file and renamed into place,
under a lock, so concurrent processes (DDP ranks) build it once and never see a partial file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from collections.abc import Iterator, Sequence

import numpy as np
from tqdm.auto import tqdm

from atzoo.data.images import load_image
from atzoo.data.layout import Records
from atzoo.data.transforms import resize_image
from atzoo.errors import DataError
from atzoo.io import atomic_path

CACHE_DIR_ENV = "ATZOO_CACHE_DIR"
CACHE_SUBDIR = "images"
BUILD_CHUNK = 256


def default_cache_dir() -> Path:
    """`$ATZOO_CACHE_DIR`, else `~/.cache/atzoo`."""
    configured = os.environ.get(CACHE_DIR_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "atzoo"


def _stat(path: Path) -> os.stat_result:
    try:
        return path.stat()
    except FileNotFoundError:
        raise DataError(f"image {path} does not exist (the dataset changed after it was read?)") from None
    except OSError as error:
        raise DataError(f"image {path} cannot be read ({error})") from None


def dataset_fingerprint(records: Records) -> str:
    """sha256 over the sorted (relative path, size in bytes) of every record.

    Independent of where the dataset lies and of record order; changes when a file is added,
    removed or changes size.
    """
    digest = hashlib.sha256()
    for relative in sorted(records.path.tolist()):
        digest.update(f"{relative}\0{_stat(records.root / relative).st_size}\n".encode())
    return digest.hexdigest()


def cache_key(records: Records) -> str:
    """sha256 over the resolved root and each record's (path, size, mtime), in record order."""
    digest = hashlib.sha256(f"{Path(records.root).resolve()}\n".encode())
    for relative in records.path.tolist():
        info = _stat(records.root / relative)
        digest.update(f"{relative}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


@contextlib.contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock beside `path` (no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def decode_resized(path: Path, image_size: tuple[int, int]) -> np.ndarray:
    """The image at `path` as uint8 (H, W, 3), resized exactly as the cache stores it."""
    return resize_image(load_image(path), image_size)


class ImageCache:
    """Decoded images of `records` at `image_size`, memory-mapped from `<cache_dir>/images/`.

    Construct it to open (building first if needed) the cache file; `cache[i]` is record i's
    uint8 (H, W, 3) image. Pickles without the mapping, so DataLoader workers reopen the file.
    """

    def __init__(self, records: Records, image_size: tuple[int, int], cache_dir: str | os.PathLike | None = None,
                 *, progress: bool = True, threads: int | None = None) -> None:
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.shape = (len(records), *self.image_size, 3)
        directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        height, width = self.image_size
        self.path = directory / CACHE_SUBDIR / f"{cache_key(records)}-{height}x{width}.u8"
        self.built = False
        with _build_lock(self.path):
            if not self._is_complete():
                self._build(records, progress, threads)
                self.built = True
        self._array: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape))

    def _is_complete(self) -> bool:
        return self.path.is_file() and self.path.stat().st_size == self.nbytes

    def _build(self, records: Records, progress: bool, threads: int | None) -> None:
        paths = records.absolute_paths()
        with atomic_path(self.path) as tmp:
            if len(paths):
                self._decode_into(tmp, paths, progress, threads or min(8, os.cpu_count() or 1))

    def _decode_into(self, tmp: Path, paths: Sequence[Path], progress: bool, workers: int) -> None:
        height, width = self.image_size
        target = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=self.shape)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            bar = tqdm(total=len(paths), desc=f"caching images at {height}x{width}", unit="img",
                       disable=None if progress else True, leave=False)
            for start in range(0, len(paths), BUILD_CHUNK):
                chunk = paths[start:start + BUILD_CHUNK]
                for offset, image in enumerate(pool.map(lambda p: decode_resized(p, self.image_size), chunk)):
                    target[start + offset] = image
                bar.update(len(chunk))
            bar.close()
        target.flush()
        del target

    def _mapped(self) -> np.ndarray:
        if self._array is None:
            self._array = np.memmap(self.path, dtype=np.uint8, mode="r", shape=self.shape)
        return self._array

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: int) -> np.ndarray:
        return np.array(self._mapped()[index])

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_array"] = None
        return state
