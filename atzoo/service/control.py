"""What users do with the queue: submit (validated first), cancel, retry, read status and logs."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from atzoo.errors import FormatError, LeaderboardError, ServiceError
from atzoo.formats.jsonfile import read_json
from atzoo.service import slurm
from atzoo.service.jobs import train_spec, verify_spec
from atzoo.service.processes import kill_job_processes
from atzoo.service.queue import (JOB_RECORD, JOB_RECORD_FORMAT, RECOVER_HINT, TERMINAL, DamagedRow, Job, Queue,
                                 open_queue, row_problem)
from atzoo.service.runnerdir import JOBS, MARKER, RunnerDir, open_runner_dir
from atzoo.service.slurm import SyncReport
from atzoo.service.slurm_options import SlurmOptions, read_defaults, write_defaults
from atzoo.service.worker import DEFAULT_STALE_AFTER_S

ENTRY_RUN_PLACEHOLDER = "JOB_RUN_DIR"
ENTRY_PROBLEMS_SHOWN = 3
WORKER_GONE = "cancelled by request (its worker was gone)"
DAMAGED = "damaged"


def validate_train_request(method: str, data_root: Path, settings: list[str]) -> str:
    """Refuse what would fail at once on a worker, with the same check `atzoo train` makes
    (`resolve_recipe`: the method, its backbone and losses, every `--set` key and its range), and a
    missing dataset. Returns the method's qualified name."""
    return _checked_train_request(method, data_root, settings)[0]


def _checked_train_request(method: str, data_root: Path, settings: list[str]) -> tuple[str, int]:
    """`validate_train_request`, also returning how many epochs pass between checkpoints."""
    from atzoo.config import parse_overrides
    from atzoo.registry import load_registry
    from atzoo.runner.recipe import resolve_recipe

    recipe = resolve_recipe(method, parse_overrides(settings), load_registry())
    _require_data_root(data_root)
    return recipe.method.qualified_name, recipe.train.checkpoint_every


def _require_data_root(data_root: Path) -> None:
    """The root exists and holds at least one person folder (`pNNN-dNN-cNN`); stops at the first one,
    so a full dataset is not scanned at submission."""
    from atzoo.data.layout import FOLDER_PATTERN

    if not data_root.is_dir():
        raise ServiceError(f"dataset root {data_root} does not exist or is not a folder")
    with os.scandir(data_root) as entries:
        if any(entry.is_dir() and FOLDER_PATTERN.match(entry.name) for entry in entries):
            return
    raise ServiceError(f"dataset root {data_root} holds no person folder (pNNN-dNN-cNN); expected the root of an "
                       f"AT-USTC or synthetic dataset")


def validate_entry_args(entry_args: list[str] | tuple[str, ...]) -> None:
    """Parse the arguments of the job's `atzoo submit RUN_DIR ARGS...` step as that command does
    (nothing runs), so a missing required option or an unknown one is refused now, not after training."""
    from atzoo.leaderboard.submit_options import parse_submit_args

    try:
        parse_submit_args([ENTRY_RUN_PLACEHOLDER, *entry_args])
    except LeaderboardError as error:
        raise ServiceError(f"entry arguments {list(entry_args)} are not valid for `atzoo submit`: {error}") from None


def _check_limits(time_limit_s: float | None, memory_limit_gb: float | None) -> None:
    for name, value, unit in (("time limit", time_limit_s, "seconds"), ("memory limit", memory_limit_gb, "GB")):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ServiceError(f"{name} must be a positive, finite number of {unit}; got {value}")


def submit_train(runner_dir: str | os.PathLike, method: str, data_root: str | os.PathLike, settings: list[str], *,
                 gpus: int = 1, time_limit_s: float | None = None, memory_limit_gb: float | None = None,
                 entry: bool = False, entry_args: list[str] | tuple[str, ...] = ()) -> int:
    """Validate and enqueue a training job; returns its id. With `entry`, a successful training is
    followed by `atzoo submit RUN_DIR ENTRY_ARGS...` in the same job."""
    if entry_args and not entry:
        raise ServiceError(f"entry arguments {list(entry_args)} given without --entry")
    _check_limits(time_limit_s, memory_limit_gb)
    data_root = Path(data_root).resolve()
    qualified = validate_train_request(method, data_root, settings)
    if entry:
        validate_entry_args(entry_args)
    runner = open_runner_dir(runner_dir, create=True)
    with open_queue(runner) as queue:
        return queue.submit("train", qualified, train_spec(qualified, data_root, settings, entry=entry, entry_args=entry_args), gpus=gpus,
                            time_limit_s=time_limit_s, memory_limit_gb=memory_limit_gb)


def submit_verify(runner_dir: str | os.PathLike, entry: str | os.PathLike, data_root: str | os.PathLike, *,
                  time_limit_s: float | None = None, memory_limit_gb: float | None = None) -> int:
    """Validate and enqueue the verification of a leaderboard entry file; returns the job id. Only a
    valid entry that names weights (a submission, not a paper's reported row) can be verified."""
    _check_limits(time_limit_s, memory_limit_gb)
    entry, data_root = _checked_verify_request(entry, data_root)
    runner = open_runner_dir(runner_dir, create=True)
    with open_queue(runner) as queue:
        return queue.submit("verify", entry.name, verify_spec(entry, data_root), time_limit_s=time_limit_s,
                            memory_limit_gb=memory_limit_gb)


def _checked_verify_request(entry: str | os.PathLike, data_root: str | os.PathLike) -> tuple[Path, Path]:
    entry, data_root = Path(entry).resolve(), Path(data_root).resolve()
    if not entry.is_file():
        raise ServiceError(f"leaderboard entry {entry} does not exist (expected an entry JSON file)")
    try:
        content = read_json(entry)
    except FormatError as error:
        raise ServiceError(f"leaderboard entry {entry} is not readable JSON: {error}") from None
    if not isinstance(content, dict):
        raise ServiceError(f"leaderboard entry {entry} must hold a JSON object, found {type(content).__name__}")
    _require_verifiable(entry)
    _require_data_root(data_root)
    return entry, data_root


@dataclass(frozen=True)
class SlurmSubmission:
    """A job given to the Slurm backend: its atzoo id, its Slurm job id once Slurm has it (None while the
    controller is unreachable: it stays queued in the runner directory), and warnings to show."""

    job_id: int
    slurm_job: str | None
    warnings: tuple[str, ...] = ()


def submit_slurm_train(runner_dir: str | os.PathLike, method: str, data_root: str | os.PathLike,
                       settings: list[str], options: SlurmOptions, *, entry: bool = False,
                       entry_args: list[str] | tuple[str, ...] = ()) -> SlurmSubmission:
    """Validate a training job like `submit_train`, then record it and submit it to Slurm."""
    slurm.require_client()
    if entry_args and not entry:
        raise ServiceError(f"entry arguments {list(entry_args)} given without --entry")
    data_root = Path(data_root).resolve()
    qualified, checkpoint_every = _checked_train_request(method, data_root, settings)
    if entry:
        validate_entry_args(entry_args)
    spec = train_spec(qualified, data_root, settings, entry=entry, entry_args=entry_args)
    return _submit_to_slurm(runner_dir, "train", qualified, spec, options, checkpoint_every)


def submit_slurm_verify(runner_dir: str | os.PathLike, entry: str | os.PathLike, data_root: str | os.PathLike,
                        options: SlurmOptions) -> SlurmSubmission:
    """Validate a verification job like `submit_verify`, then record it and submit it to Slurm."""
    slurm.require_client()
    entry, data_root = _checked_verify_request(entry, data_root)
    if options.nodes not in (None, 1) or options.tasks != 1:
        raise ServiceError("a verify job runs one process: leave --nodes, --tasks-per-node and --gpus-per-node "
                           "at 1 or unset")
    return _submit_to_slurm(runner_dir, "verify", entry.name, verify_spec(entry, data_root), options, None)


def _defaults_of(runner_dir: str | os.PathLike) -> SlurmOptions:
    path = Path(runner_dir)
    if not (path / MARKER).is_file():
        return SlurmOptions()
    return read_defaults(open_runner_dir(path))


def _submit_to_slurm(runner_dir: str | os.PathLike, kind: str, target: str, spec: dict[str, Any],
                     options: SlurmOptions, checkpoint_every: int | None) -> SlurmSubmission:
    options = slurm.resolve_options(options.over(_defaults_of(runner_dir)))
    unreachable = None
    try:
        slurm.preflight(options, f"the job `{kind} {target}`")
    except slurm.ControllerUnreachable as error:
        unreachable = str(error)
    runner = open_runner_dir(runner_dir, create=True)
    warnings = []
    with open_queue(runner) as queue:
        if checkpoint_every is not None:
            warning = slurm.time_limit_warning(runner, queue, target, options, checkpoint_every)
            if warning:
                warnings.append(warning)
        gpus = max(1, (options.nodes or 1) * (options.gpus_per_node or 0))
        job_id = queue.submit(kind, target, spec, gpus=gpus, backend="slurm")
        slurm.record_job(runner, queue.get(job_id), options)
        if unreachable is not None:
            slurm.defer(runner, job_id, unreachable)
            warnings.append(f"the Slurm controller is unreachable ({unreachable}); job {job_id} stays queued in "
                            f"{runner.path} and is submitted when the controller is back (`atzoo runner status` "
                            f"or `atzoo runner sync`)")
            return SlurmSubmission(job_id, None, tuple(warnings))
        report = slurm.sync(runner, queue, job_ids={job_id})
        for refused_id, message in report.refused:
            raise ServiceError(f"Slurm refused job {refused_id} ({kind} {target}): {message}; it is recorded as "
                               f"failed")
        for deferred_id, message in report.deferred:
            warnings.append(f"the Slurm controller is unreachable ({message}); job {deferred_id} stays queued and "
                            f"is submitted when the controller is back (`atzoo runner status` or `atzoo runner sync`)")
        slurm_job = slurm.details(runner).get(job_id, {}).get("slurm_job")
    return SlurmSubmission(job_id, slurm_job, tuple(warnings))


def sync_slurm(runner_dir: str | os.PathLike) -> SyncReport:
    """Submit the Slurm jobs that wait for the controller and refresh the others' states."""
    runner, queue = _existing_queue(runner_dir)
    with queue:
        return slurm.sync(runner, queue)


def slurm_defaults(runner_dir: str | os.PathLike, options: SlurmOptions | None = None, *,
                   clear: bool = False) -> SlurmOptions:
    """Read (no options), extend, or with `clear` replace the runner directory's Slurm defaults."""
    if options is None and not clear:
        return _defaults_of(runner_dir)
    runner = open_runner_dir(runner_dir, create=True)
    return write_defaults(runner, options or SlurmOptions(), merge=not clear)


def _require_verifiable(path: Path) -> None:
    from atzoo.leaderboard.store import read_entry

    try:
        entry = read_entry(path)
    except LeaderboardError as error:
        first, *problems = str(error).splitlines()
        listed = "; ".join(problem.strip() for problem in problems[:ENTRY_PROBLEMS_SHOWN])
        more = f"; {len(problems) - ENTRY_PROBLEMS_SHOWN} more" if len(problems) > ENTRY_PROBLEMS_SHOWN else ""
        raise ServiceError(f"leaderboard entry {path} cannot be verified: {first.rstrip(':')}"
                           + (f": {listed}{more} (see `atzoo leaderboard check`)" if problems else "")) from None
    if entry.weights is None:
        raise ServiceError(f"leaderboard entry {path} names no weights (origin {entry.origin!r}: reported numbers "
                           f"only); only a submission with weights can be verified")


def _no_queue_yet(runner: RunnerDir) -> bool:
    """No queue file and no job folder: nothing was submitted there yet. (A queue file missing beside
    job folders is an error that `open_queue` raises.)"""
    jobs = runner.path / JOBS
    return not runner.queue_file.exists() and not (jobs.is_dir() and any(jobs.iterdir()))


def _existing_queue(runner_dir: str | os.PathLike) -> tuple[RunnerDir, Queue]:
    """The queue of an existing runner directory, for commands that read or change jobs: a missing
    folder or queue file is refused rather than created."""
    runner = open_runner_dir(runner_dir)
    if _no_queue_yet(runner):
        raise ServiceError(f"{runner.path} has no queue file ({runner.queue_file.name}): nothing was submitted "
                           f"there yet, or the file was lost")
    return runner, open_queue(runner)


def cancel_job(runner_dir: str | os.PathLike, job_id: int, *, stale_after_s: float = DEFAULT_STALE_AFTER_S) -> Job:
    """Cancel a queued job at once; ask a running job's worker to stop it (SIGTERM, then SIGKILL).
    A running job whose heartbeat is older than `stale_after_s` (its worker is gone) is marked
    cancelled here, after any of its processes left on this machine are killed."""
    runner, queue = _existing_queue(runner_dir)
    with queue:
        job = _job(runner, queue, job_id)
        if job.backend == "slurm":
            return slurm.cancel(runner, queue, job)
        job = queue.request_cancel(job_id)
        if job.state == "running" and (job.heartbeat or 0) < time.time() - stale_after_s:
            kill_job_processes(runner.identity, job_id)
            queue.finish(job, "cancelled", reason=WORKER_GONE)
            job = queue.get(job_id)
        return job


def retry_job(runner_dir: str | os.PathLike, job_id: int) -> Job:
    """Queue a failed or cancelled job again; a Slurm job is submitted to Slurm again at once."""
    runner, queue = _existing_queue(runner_dir)
    with queue:
        job = _job(runner, queue, job_id)
        if job.backend != "slurm" or job.state not in ("failed", "cancelled"):
            return queue.retry(job_id)
        slurm.prepare_retry(runner, job)
        queue.retry(job_id)
        slurm.sync(runner, queue, job_ids={job_id})
        return queue.get(job_id)


def _job(runner: RunnerDir, queue: Queue, job_id: int) -> Job:
    """The job, or an error that also says whose job JOB_ID is when it is a Slurm job id."""
    try:
        return queue.get(job_id)
    except ServiceError as error:
        hint = slurm.foreign_job_hint(runner, job_id)
        if hint:
            raise ServiceError(f"{error}. {hint}") from None
        raise


def job_log_path(runner_dir: str | os.PathLike, job_id: int) -> Path:
    runner, queue = _existing_queue(runner_dir)
    with queue:
        _job(runner, queue, job_id)
    return runner.job_log(job_id)


def get_job(runner_dir: str | os.PathLike, job_id: int) -> Job:
    runner, queue = _existing_queue(runner_dir)
    with queue:
        return _job(runner, queue, job_id)


def job_record(runner_dir: str | os.PathLike, job_id: int) -> dict[str, Any]:
    """Everything the runner directory keeps about a job: its row, request, run folder, log, and for a
    Slurm job its options, commands, Slurm job ids and state history."""
    runner, queue = _existing_queue(runner_dir)
    with queue:
        job = _job(runner, queue, job_id)
    slurm_info = slurm.details(runner).get(job.id) if job.backend == "slurm" else None
    record = {**job_row(job, slurm_info=slurm_info), "spec": job.spec, "result": job.result,
              "log": str(runner.job_log(job.id)), "events": str(runner.job_events(job.id))}
    if job.kind == "train":
        record["run"] = str(runner.job_run(job.id))
    if job.backend == "slurm":
        record["slurm"] = slurm.describe(runner, job)
    return record


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")


def job_row(job: Job, now: float | None = None, *, slurm_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """The shape `status --json` prints and the app's queue view shows. A running job whose heartbeat
    stopped says so in its reason, so a stuck queue is visible rather than merely slow. A Slurm job's
    row adds its Slurm job id, the scheduler's state, its node, and Slurm's elapsed time as duration."""
    now = now or time.time()
    end = job.finished if job.finished is not None else now if job.state == "running" else None
    duration = round(end - job.started, 1) if end is not None and job.started is not None else None
    reason = job.reason
    if job.state == "running" and job.cancel_requested:
        reason = "cancel requested"
    elif job.state == "running" and job.heartbeat is not None:
        silent = now - job.heartbeat
        if silent > DEFAULT_STALE_AFTER_S:
            reason = (f"no heartbeat for {silent:.0f} s: its worker is gone or stuck; a running worker takes the "
                      f"job over and resumes it")
    row = {"id": job.id, "kind": job.kind, "target": job.target, "state": job.state, "attempts": job.attempts,
           "submitted": _iso(job.submitted), "started": _iso(job.started), "finished": _iso(job.finished),
           "duration_s": duration, "reason": reason, "backend": job.backend}
    if job.backend == "slurm":
        info = slurm_info or {}
        if info.get("elapsed_s") is not None:
            row["duration_s"] = info["elapsed_s"]
        row.update({"slurm_job": info.get("slurm_job"), "scheduler_state": info.get("scheduler_state"),
                    "node": info.get("node")})
    return row


def queue_rows(runner_dir: str | os.PathLike, *, missing_ok: bool = True) -> list[dict[str, Any]]:
    """Every job of the runner directory, oldest first. With `missing_ok` (what the app's queue view
    wants), a path where no runner directory or queue exists yet gives no rows; without it (`status`),
    that is a `ServiceError`. A folder that is not a runner directory, a damaged queue, or a queue file
    missing beside job folders is always a `ServiceError`."""
    path = Path(runner_dir)
    never_used = not path.exists() or (path.is_dir() and not any(path.iterdir()))
    if missing_ok and (never_used or _no_queue_yet(open_runner_dir(path))):
        return []
    runner, queue = _existing_queue(path)
    now = time.time()
    with queue:
        jobs, damaged = queue.scan()
        known = {job.id for job in jobs} | {row.id for row in damaged}
        orphans = [DamagedRow(job_id, f"job folder jobs/{job_id} has no row in the queue; {RECOVER_HINT}")
                   for job_id in queue.job_folder_ids() if job_id not in known]
    slurm_info = slurm.details(runner) if any(job.backend == "slurm" for job in jobs) else {}
    rows = ([job_row(job, now, slurm_info=slurm_info.get(job.id)) for job in jobs]
            + [damaged_row(row) for row in [*damaged, *orphans]])
    return sorted(rows, key=lambda row: row["id"] if isinstance(row["id"], int) else -1)


def damaged_row(row: DamagedRow) -> dict[str, Any]:
    """A row that cannot be read, in the shape of `job_row`, with state `damaged` and the problem."""
    return {"id": row.id, "kind": "?", "target": "", "state": DAMAGED, "attempts": 0, "submitted": None,
            "started": None, "finished": None, "duration_s": None, "reason": row.problem, "backend": "?"}


# ---------------------------------------------------------------------------------------------
# recovery


@dataclass
class Recovery:
    """What `atzoo runner recover` did: ids added back (with their state), folders skipped, old file kept."""

    added: dict[int, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    kept_rows: int = 0
    moved_aside: Path | None = None


def _state_from_events(events: Path) -> tuple[str, int, str | None]:
    """(state, attempts, reason) of a job as its events file tells it; an attempt that started and never
    ended was interrupted, so the job is failed (retry resumes it)."""
    state, attempts, reason = "queued", 0, None
    if not events.is_file():
        return state, attempts, reason
    for line in events.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        if event.get("event") == "start":
            attempts += 1
            state, reason = "failed", "recovered: its last attempt was interrupted; `atzoo runner retry` resumes it"
        elif event.get("event") == "end":
            ended = event.get("state")
            if ended in TERMINAL:
                state, reason = ended, event.get("reason") if isinstance(event.get("reason"), str) else None
            elif ended == "released":
                state, reason = "queued", None
    return state, attempts, reason


def _job_record(folder: Path, runner: RunnerDir) -> dict[str, Any]:
    """The job's record written at submission, checked; a `ServiceError` says why it cannot be used."""
    record_path = folder / JOB_RECORD
    if not record_path.is_file():
        raise ServiceError(f"no {JOB_RECORD} (made before job records existed, or not a job folder)")
    try:
        record = read_json(record_path)
    except FormatError as error:
        raise ServiceError(f"{JOB_RECORD} cannot be used: {error}") from None
    if not isinstance(record, dict) or record.get("format") != JOB_RECORD_FORMAT:
        raise ServiceError(f"{JOB_RECORD} is not a job record")
    if record.get("runner") != runner.identity or record.get("id") != int(folder.name):
        raise ServiceError(f"{JOB_RECORD} belongs to another runner directory or job")
    problem = row_problem({**record, "spec": json.dumps(record.get("spec")), "state": "queued", "result": None,
                           "attempts": 0, "pid": None, "returncode": None, "heartbeat": None, "started": None,
                           "finished": None})
    if problem:
        raise ServiceError(f"{JOB_RECORD} is damaged ({problem})")
    return record


def _move_aside(queue_file: Path) -> Path | None:
    if not queue_file.exists():
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    aside = queue_file.with_name(f"{queue_file.name}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = queue_file.with_name(queue_file.name + suffix)
        if source.exists():
            os.replace(source, aside.with_name(aside.name + suffix))
    return aside


def recover_queue(runner_dir: str | os.PathLike) -> Recovery:
    """Rebuild the queue from the job folders' records. A readable queue of this runner directory keeps
    its rows and gains the jobs whose folders it lacks; a damaged, empty, missing or foreign queue file
    is moved aside (never deleted) and a new one is built. Ids stay those of the folders, and the next
    submission is numbered above all of them."""
    runner = open_runner_dir(runner_dir)
    recovery = Recovery()
    jobs_dir = runner.path / JOBS
    try:
        if not runner.queue_file.exists():
            raise ServiceError("missing")
        queue = Queue.open(runner.queue_file, create=False, jobs_dir=jobs_dir, runner_identity=runner.identity)
    except ServiceError:
        recovery.moved_aside = _move_aside(runner.queue_file)
        queue = Queue.open(runner.queue_file, create=True, runner_identity=runner.identity)
        queue.jobs_dir = jobs_dir
    with queue:
        jobs, damaged = queue.scan()
        known = {job.id for job in jobs} | {row.id for row in damaged}
        recovery.kept_rows = len(known)
        for job_id in queue.job_folder_ids():
            if job_id in known:
                continue
            folder = jobs_dir / str(job_id)
            try:
                record = _job_record(folder, runner)
            except ServiceError as error:
                recovery.skipped[str(folder)] = str(error)
                continue
            state, attempts, reason = _state_from_events(runner.job_events(job_id))
            queue.restore(record, state=state, attempts=attempts, reason=reason)
            recovery.added[job_id] = state
    return recovery
