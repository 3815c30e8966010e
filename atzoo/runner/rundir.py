"""The run directory: everything a training run leaves behind, each file written atomically.

```
RUN_DIR/
  config.json           the resolved recipe, data root, label counts, provenance
  checkpoint.safetensors  latest epoch checkpoint (model, losses, optimizer), for --resume
  model.safetensors     final weights (model only)
  train_log.jsonl       one JSON object per logged interval and per epoch
  metrics.json          six scenarios, Any-Time, mixed test
  environment.json      versions and device
  dataset.json          dataset fingerprint (hash of relative file names and sizes) and counts
```
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atzoo.errors import AtzooError
from atzoo.io import read_json, write_json_atomic, write_text_atomic

CONFIG = "config.json"
CHECKPOINT = "checkpoint.safetensors"
MODEL = "model.safetensors"
TRAIN_LOG = "train_log.jsonl"
METRICS = "metrics.json"
ENVIRONMENT = "environment.json"
DATASET = "dataset.json"


@dataclass(frozen=True)
class RunDir:
    path: Path

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def config(self) -> dict[str, Any]:
        return read_json(self.file(CONFIG))

    def write_json(self, name: str, data: Any) -> None:
        write_json_atomic(self.file(name), data)

    def append_log(self, record: dict[str, Any]) -> None:
        with open(self.file(TRAIN_LOG), "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def read_log(self) -> list[dict[str, Any]]:
        """Complete lines only: a line torn by a crash is ignored."""
        path = self.file(TRAIN_LOG)
        if not path.exists():
            return []
        records = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def truncate_log(self, epoch: int) -> None:
        """Keep only the records of epochs up to `epoch` (those a resumed run does not redo)."""
        kept = [r for r in self.read_log() if r.get("epoch", 0) <= epoch]
        write_text_atomic(self.file(TRAIN_LOG), "".join(json.dumps(r) + "\n" for r in kept))


def new_run_dir(path: str | os.PathLike) -> RunDir:
    """A fresh run directory; an existing non-empty one is refused rather than mixed with."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise AtzooError(f"run directory {path} already exists and is not empty; "
                         f"use --resume to continue it, or choose another --out")
    path.mkdir(parents=True, exist_ok=True)
    return RunDir(path)


def open_run_dir(path: str | os.PathLike, *, need: tuple[str, ...] = (CONFIG,)) -> RunDir:
    """An existing run directory; one without `config.json` is not a run directory."""
    path = Path(path)
    if not path.is_dir():
        raise AtzooError(f"{path} is not a run directory (it does not exist or is not a folder)")
    if not (path / CONFIG).is_file():
        raise AtzooError(f"{path} is not a run directory: it has no {CONFIG} (made by `atzoo train`)")
    for name in need:
        if not (path / name).is_file():
            raise AtzooError(f"run directory {path} has no {name}; "
                             + ("the run has not finished training" if name == MODEL else "it is incomplete"))
    return RunDir(path)
