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

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atzoo.errors import AtzooError, FormatError
from atzoo.formats import dump_json_line, model_data, parse_json, write_json, write_text_atomic
from atzoo.formats.runconfig import RunConfig, read_run_config, write_run_config

CONFIG = "config.json"
CHECKPOINT = "checkpoint.safetensors"
MODEL = "model.safetensors"
TRAIN_LOG = "train_log.jsonl"
METRICS_FILE = "metrics.json"
ENVIRONMENT = "environment.json"
DATASET = "dataset.json"


@dataclass(frozen=True)
class RunDir:
    path: Path

    def file(self, name: str) -> Path:
        return self.path / name

    def read_config(self) -> RunConfig:
        """`config.json`, checked: a damaged one is a FormatError naming the file, the key and what
        was expected."""
        return read_run_config(self.file(CONFIG))

    def write_config(self, config: RunConfig) -> None:
        write_run_config(self.file(CONFIG), config)

    @property
    def config(self) -> dict[str, Any]:
        """`config.json`, checked, in its JSON form."""
        return model_data(self.read_config())

    def write_json(self, name: str, data: Any) -> None:
        write_json(self.file(name), data)

    def append_log(self, record: dict[str, Any]) -> None:
        with open(self.file(TRAIN_LOG), "a", encoding="utf-8") as handle:
            handle.write(dump_json_line(record, str(self.file(TRAIN_LOG))))
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
                record = parse_json(line, str(path))
            except FormatError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def truncate_log(self, epoch: int) -> None:
        """Keep only the records of epochs up to `epoch` (those a resumed run does not redo)."""
        kept = [r for r in self.read_log() if r.get("epoch", 0) <= epoch]
        write_text_atomic(self.file(TRAIN_LOG), "".join(dump_json_line(r) for r in kept))


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
