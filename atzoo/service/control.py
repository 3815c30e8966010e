"""What users do with the queue: submit (validated first), cancel, retry, read status and logs."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from atzoo.errors import ServiceError
from atzoo.service.jobs import train_spec, verify_spec
from atzoo.service.processes import kill_job_processes
from atzoo.service.queue import Job, open_queue
from atzoo.service.runnerdir import open_runner_dir

BACKBONE_PREFIX = "backbone."


def validate_train_request(method: str, data_root: Path, settings: list[str]) -> str:
    """Refuse what would fail at once on a worker: an unknown method, a malformed or unknown `--set`,
    a missing dataset. Returns the method's qualified name."""
    from atzoo.config import build_train_config, parse_overrides
    from atzoo.registry import load_registry

    entry = load_registry().get("methods", method)
    overrides = parse_overrides(settings)
    build_train_config(entry.item.train, {k: v for k, v in overrides.items() if not k.startswith(BACKBONE_PREFIX)})
    _require_data_root(data_root)
    return entry.qualified_name


def _require_data_root(data_root: Path) -> None:
    if not data_root.is_dir():
        raise ServiceError(f"dataset root {data_root} does not exist or is not a folder")


def submit_train(runner_dir: str | os.PathLike, method: str, data_root: str | os.PathLike, settings: list[str], *,
                 gpus: int = 1, time_limit_s: float | None = None, memory_limit_gb: float | None = None,
                 entry: bool = False, entry_args: list[str] | tuple[str, ...] = ()) -> int:
    """Validate and enqueue a training job; returns its id. With `entry`, a successful training is
    followed by `atzoo submit RUN_DIR ENTRY_ARGS...` in the same job."""
    if entry_args and not entry:
        raise ServiceError(f"entry arguments {list(entry_args)} given without --entry")
    data_root = Path(data_root).resolve()
    qualified = validate_train_request(method, data_root, settings)
    runner = open_runner_dir(runner_dir, create=True)
    with open_queue(runner) as queue:
        return queue.submit("train", qualified, train_spec(qualified, data_root, settings, entry=entry, entry_args=entry_args), gpus=gpus,
                            time_limit_s=time_limit_s, memory_limit_gb=memory_limit_gb)


def submit_verify(runner_dir: str | os.PathLike, entry: str | os.PathLike, data_root: str | os.PathLike, *,
                  time_limit_s: float | None = None, memory_limit_gb: float | None = None) -> int:
    """Validate and enqueue the verification of a leaderboard entry file; returns the job id."""
    entry, data_root = Path(entry).resolve(), Path(data_root).resolve()
    if not entry.is_file():
        raise ServiceError(f"leaderboard entry {entry} does not exist (expected an entry JSON file)")
    try:
        content = json.loads(entry.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ServiceError(f"leaderboard entry {entry} is not readable JSON: {error}") from None
    if not isinstance(content, dict):
        raise ServiceError(f"leaderboard entry {entry} must hold a JSON object, found {type(content).__name__}")
    _require_data_root(data_root)
    runner = open_runner_dir(runner_dir, create=True)
    with open_queue(runner) as queue:
        return queue.submit("verify", entry.name, verify_spec(entry, data_root), time_limit_s=time_limit_s,
                            memory_limit_gb=memory_limit_gb)


def cancel_job(runner_dir: str | os.PathLike, job_id: int, *, stale_after_s: float = 60.0) -> Job:
    """Cancel a queued job at once; ask a running job's worker to stop it (SIGTERM, then SIGKILL).
    A running job whose worker is gone (stale heartbeat) is stopped here and marked cancelled."""
    runner = open_runner_dir(runner_dir)
    with open_queue(runner) as queue:
        job = queue.request_cancel(job_id)
        if job.state == "running" and (job.heartbeat or 0) < time.time() - stale_after_s:
            kill_job_processes(runner.identity, job_id)
            queue.finish(job, "cancelled", reason="cancelled by request (its worker was gone)")
            job = queue.get(job_id)
        return job


def retry_job(runner_dir: str | os.PathLike, job_id: int) -> Job:
    runner = open_runner_dir(runner_dir)
    with open_queue(runner) as queue:
        return queue.retry(job_id)


def job_log_path(runner_dir: str | os.PathLike, job_id: int) -> Path:
    runner = open_runner_dir(runner_dir)
    with open_queue(runner) as queue:
        queue.get(job_id)
    return runner.job_log(job_id)


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")


def job_row(job: Job, now: float | None = None) -> dict[str, Any]:
    """The shape `status --json` prints and the app's verification-queue view shows."""
    end = job.finished if job.finished is not None else (now or time.time()) if job.state == "running" else None
    duration = round(end - job.started, 1) if end is not None and job.started is not None else None
    reason = job.reason
    if job.state == "running" and job.cancel_requested:
        reason = "cancel requested"
    return {"id": job.id, "kind": job.kind, "target": job.target, "state": job.state, "attempts": job.attempts,
            "submitted": _iso(job.submitted), "started": _iso(job.started), "finished": _iso(job.finished),
            "duration_s": duration, "reason": reason}


def queue_rows(runner_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every job of the runner directory, oldest first. A path where no runner directory exists yet
    gives no rows; a folder that is not a runner directory, or a damaged queue, is a `ServiceError`."""
    path = Path(runner_dir)
    if not path.exists():
        return []
    runner = open_runner_dir(path)
    if not runner.queue_file.exists():
        return []
    now = time.time()
    with open_queue(runner) as queue:
        return [job_row(job, now) for job in queue.jobs()]
