"""The runner directory: the queue file, a marker that says what the folder is, one folder per job.

```
RUNNER_DIR/
  atzoo-runner.json     marker: this folder is an atzoo runner directory
  queue.sqlite3         the job queue (SQLite, WAL mode)
  jobs/<JOB_ID>/
    job.log             every attempt's output, with a header line per attempt and step
    events.jsonl        start / end / reclaim of each attempt (who ran it, which pid)
    run/                the run directory of a train job
```
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from atzoo.io import read_json, write_json_atomic
from atzoo.errors import ServiceError

MARKER = "atzoo-runner.json"
QUEUE_FILE = "queue.sqlite3"
JOBS = "jobs"
JOB_LOG = "job.log"
JOB_EVENTS = "events.jsonl"
JOB_RUN = "run"
FORMAT = "atzoo-runner-1"
ENV_RUNNER_DIR = "ATZOO_RUNNER_DIR"
DEFAULT_RUNNER_DIR = Path("atzoo-runner")


def default_runner_dir() -> Path:
    """`ATZOO_RUNNER_DIR`, else `./atzoo-runner`."""
    return Path(os.environ.get(ENV_RUNNER_DIR) or DEFAULT_RUNNER_DIR)


@dataclass(frozen=True)
class RunnerDir:
    path: Path
    identity: str

    @property
    def queue_file(self) -> Path:
        return self.path / QUEUE_FILE

    def job_dir(self, job_id: int) -> Path:
        return self.path / JOBS / str(job_id)

    def job_log(self, job_id: int) -> Path:
        return self.job_dir(job_id) / JOB_LOG

    def job_events(self, job_id: int) -> Path:
        return self.job_dir(job_id) / JOB_EVENTS

    def job_run(self, job_id: int) -> Path:
        return self.job_dir(job_id) / JOB_RUN


def _read_marker(path: Path) -> str:
    """The runner directory's identity (a random id in its marker, so job processes of two runner
    directories on one machine are never mistaken for each other)."""
    marker = path / MARKER
    if not marker.is_file():
        raise ServiceError(f"{path} is not an atzoo runner directory (it has no {MARKER}); "
                           f"pass --runner-dir pointing at one, or an empty or new folder to create one")
    try:
        data = read_json(marker)
    except (OSError, ValueError) as error:
        raise ServiceError(f"{marker} cannot be read as JSON ({error}); {path} is not a usable runner directory") \
            from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else data
        raise ServiceError(f"{marker} has format {found!r}; expected {FORMAT!r}")
    identity = data.get("id")
    if not isinstance(identity, str) or not identity:
        raise ServiceError(f"{marker} has no runner id; it is damaged")
    return identity


def open_runner_dir(path: str | os.PathLike, *, create: bool = False) -> RunnerDir:
    """An existing runner directory; with `create`, a new or empty folder becomes one.

    A folder that holds anything else is refused, so a mistyped path never gets a queue dropped into it.
    The path is made absolute, so job command lines work from any working directory.
    """
    path = Path(path).absolute()
    if path.exists() and not path.is_dir():
        raise ServiceError(f"{path} is a file, not a runner directory")
    if create and (not path.exists() or not any(path.iterdir())):
        from atzoo.outputs import OutputError, check_placement

        try:
            check_placement(path)
        except OutputError as error:
            raise ServiceError(str(error)) from None
        path.mkdir(parents=True, exist_ok=True)
        (path / JOBS).mkdir(exist_ok=True)
        identity = uuid.uuid4().hex
        write_json_atomic(path / MARKER, {"format": FORMAT, "id": identity,
                                          "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        return RunnerDir(path, identity)
    if not path.exists():
        raise ServiceError(f"no runner directory at {path}: submit a job or start a worker to create it")
    return RunnerDir(path, _read_marker(path))
