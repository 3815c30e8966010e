"""The Slurm backend of the runner service: the same train and verify jobs, run by a Slurm cluster
through submitit, recorded in the runner directory beside the local workers' jobs.

The record of a Slurm job is its row in the queue's `jobs` table (backend `slurm`; no local worker
ever claims it) plus a `slurm_jobs` row (resolved sbatch options, the commands it runs, the Slurm job
id, the scheduler's last state, node and elapsed time) and its `slurm_history` (every submission,
state change, cancel and retry). Nothing of atzoo runs on the login node between commands: each
`submit`, `status`, `sync`, `cancel` and `retry` brings the record up to date with the scheduler
(`sync`): a job the controller could not take is submitted once it is back, a state change is
recorded, and a job Slurm no longer knows (a controller that lost its state) is marked failed with
that reason, never silently dropped. What runs inside the allocation is `atzoo.service.slurm_task`.

Exactly once: a job is submitted under a name unique to the runner directory and job
(`atzoo-<runner id>-<job>`); a submission that was cut off between `sbatch` and its record is found
again by that name instead of being submitted twice. Two commands never submit the same job at once
(the submission is claimed in one SQLite transaction). A requeued job resumes from its last checkpoint
and a finished one skips its completed steps, so one run folder holds one set of results.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from atzoo.errors import ServiceError
from atzoo.runner.rundir import TRAIN_LOG
from atzoo.service.jobs import Step, job_result, train_steps, verify_steps
from atzoo.service.queue import TERMINAL, Job, Queue
from atzoo.service.runnerdir import RunnerDir
from atzoo.service.slurm_options import SlurmOptions, time_seconds
from atzoo.service.slurm_records import SCHEDULER_PREFIX, SlurmRecord, SlurmRecords
from atzoo.service.worker import error_line, log_tail

SLURM_FOLDER = "slurm"
CLIENT_COMMANDS = ("sbatch", "squeue", "sacct", "scancel", "srun", "sinfo")
INSTALL_HINT = ("Install Slurm's client commands and point them at your cluster (Debian/Ubuntu: `apt-get install "
                "slurm-client munge`, with the cluster's slurm.conf and munge key; a single-node test cluster: "
                "`tests/slurm/local-cluster.sh`), or use the local backend: submit without `--backend slurm` and "
                "run `atzoo runner work`")
UNREACHABLE = ("Unable to contact slurm controller", "Socket timed out", "Connection refused",
               "Zero Bytes were transmitted", "Unable to connect", "Connection timed out")
COMMAND_TIMEOUT_S = 120.0
VANISHED_GRACE_S = 60.0
UNLIMITED_TIME_MINUTES = 3 * 24 * 60
SHORT_TIME_S = 300
MAX_SIGNAL_DELAY_S = 90

QUEUED_STATES = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SPECIAL_EXIT"}
RUNNING_STATES = {"RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "STAGE_OUT", "RESIZING", "SIGNALING",
                  "STOPPED"}
FINISHED_STATES = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL",
                   "DEADLINE", "PREEMPTED", "REVOKED"}

class ControllerUnreachable(ServiceError):
    """The Slurm controller did not answer (it is down, or the network is): try again later."""


class SlurmRefused(ServiceError):
    """Slurm refused a request (an unknown partition or account, a limit the job exceeds)."""


# -- Slurm's commands ----------------------------------------------------------------------------


def missing_client_commands() -> list[str]:
    return [command for command in CLIENT_COMMANDS if shutil.which(command) is None]


def require_client() -> None:
    missing = missing_client_commands()
    if missing:
        raise ServiceError(f"the Slurm backend needs Slurm's commands, and {', '.join(missing)} "
                           f"{'is' if len(missing) == 1 else 'are'} not installed here (not on PATH). {INSTALL_HINT}")


def _message(output: str) -> str:
    """Slurm's complaint, without the `sbatch: error:` prefixes, on one line."""
    lines = [re.sub(r"^(\w+: )?(error: |fatal: )?(allocation failure: )?", "", line.strip())
             for line in output.splitlines() if line.strip()]
    return "; ".join(dict.fromkeys(line for line in lines if line)) or "no message"


def _run(argv: list[str], *, timeout: float = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run a Slurm command; an unreachable controller is `ControllerUnreachable`."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        require_client()
        raise
    except subprocess.TimeoutExpired:
        raise ControllerUnreachable(f"`{argv[0]}` got no answer within {timeout:g} s") from None
    if done.returncode != 0 and any(marker in done.stderr for marker in UNREACHABLE):
        raise ControllerUnreachable(f"{argv[0]}: {_message(done.stderr)}")
    return done


@dataclass(frozen=True)
class Seen:
    """One Slurm job as the controller (squeue) or the accounting (sacct) reports it."""

    slurm_id: str
    name: str
    state: str
    node: str | None
    elapsed_s: float | None = None
    exit_code: str | None = None


def _node(text: str) -> str | None:
    return None if text in ("", "None assigned", "(null)") or text.startswith("(") else text


def controller_view(ids: list[str]) -> dict[str, Seen]:
    """What the controller knows of these jobs (squeue); jobs it does not know are left out."""
    if not ids:
        return {}
    done = _run(["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", "%i|%j|%T|%N|%M"])
    if done.returncode != 0:
        if "Invalid job id" in done.stderr:
            return {}
        raise ServiceError(f"squeue failed: {_message(done.stderr)}")
    seen = {}
    for line in done.stdout.splitlines():
        parts = line.split("|")
        if len(parts) != 5:
            continue
        elapsed = _elapsed(parts[4])
        seen[parts[0]] = Seen(parts[0], parts[1], parts[2].split()[0], _node(parts[3]), elapsed)
    return seen


def _elapsed(text: str) -> float | None:
    try:
        return float(time_seconds(text)) if text not in ("", "0:00") else 0.0
    except ServiceError:
        return None


def accounting_view(ids: list[str]) -> dict[str, Seen] | None:
    """What the accounting database knows of these jobs (sacct), or None when it cannot be asked."""
    if not ids:
        return {}
    try:
        done = _run(["sacct", "-X", "-n", "-P", "-j", ",".join(ids), "-o",
                     "JobIDRaw,JobName,State,NodeList,ElapsedRaw,ExitCode"])
    except ControllerUnreachable:
        return None
    if done.returncode != 0:
        return None
    seen = {}
    for line in done.stdout.splitlines():
        parts = line.split("|")
        if len(parts) != 6:
            continue
        elapsed = float(parts[4]) if parts[4].isdigit() else None
        seen[parts[0]] = Seen(parts[0], parts[1], parts[2].split()[0], _node(parts[3]), elapsed, parts[5])
    return seen


def active_ids_named(name: str) -> list[str]:
    """Slurm jobs the controller still holds (queued, running, or just ended) under this job name."""
    done = _run(["squeue", "-h", "-t", "all", "--name", name, "-o", "%i|%T"])
    if done.returncode != 0:
        raise ServiceError(f"squeue failed: {_message(done.stderr)}")
    return [line.split("|")[0] for line in done.stdout.splitlines() if line.strip()]


def default_partition() -> str | None:
    done = _run(["sinfo", "-h", "-o", "%P"])
    for line in done.stdout.split():
        if line.endswith("*"):
            return line[:-1]
    return None


def partition_times(partition: str) -> tuple[str, str] | None:
    """The partition's default and maximum time limits as sinfo prints them, or None if unknown."""
    done = _run(["sinfo", "-h", "-p", partition, "-o", "%L|%l"])
    lines = [line for line in done.stdout.splitlines() if "|" in line]
    if done.returncode != 0 or not lines:
        return None
    default, maximum = lines[0].split("|", 1)
    return default.strip(), maximum.strip()


def partition_gres(partition: str) -> list[str]:
    done = _run(["sinfo", "-h", "-p", partition, "-o", "%G"])
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def scancel(slurm_id: str) -> None:
    done = _run(["scancel", slurm_id])
    if done.returncode != 0:
        raise SlurmRefused(f"scancel {slurm_id}: {_message(done.stderr)}")


# -- names ------------------------------------------------------------------------------------


def job_name(runner: RunnerDir, job_id: int) -> str:
    """The Slurm job name: unique to this runner directory and job (how a lost submission is found)."""
    return f"atzoo-{runner.identity[:12]}-{job_id}"


def parse_job_name(name: str) -> tuple[str, int] | None:
    match = re.fullmatch(r"atzoo-([0-9a-f]{12})-([0-9]+)", name)
    return (match[1], int(match[2])) if match else None


# -- submitting ----------------------------------------------------------------------------------


@dataclass
class SyncReport:
    """What a sync did and what it could not do, for the command to say."""

    submitted: list[tuple[int, str]] = field(default_factory=list)
    deferred: list[tuple[int, str]] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)
    changed: list[tuple[int, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def resolve_options(options: SlurmOptions) -> SlurmOptions:
    """The options a job is submitted with: a time limit is always set (the partition's default, else its
    maximum, else three days), since submitit needs it to tell a time limit from a preemption."""
    if options.time is not None:
        return options
    try:
        partition = options.partition or default_partition()
        times = partition_times(partition) if partition else None
    except ControllerUnreachable:
        times = None
    for limit in times or ():
        if limit not in ("n/a", "infinite", "UNLIMITED", ""):
            with contextlib.suppress(ServiceError):
                time_seconds(limit)
                return replace(options, time=limit)
    return replace(options, time=str(UNLIMITED_TIME_MINUTES))


def signal_delay_s(options: SlurmOptions) -> int:
    """How long before the time limit Slurm signals the job (submitit then requeues it): 90 s, or a
    quarter of a short limit."""
    return max(10, min(MAX_SIGNAL_DELAY_S, time_seconds(options.time or "0:10:00") // 4))


def executor_parameters(options: SlurmOptions, name: str, comment: str) -> dict[str, Any]:
    """submitit's `SlurmExecutor.update_parameters` arguments for these options."""
    parameters: dict[str, Any] = {
        "job_name": name, "comment": comment, "nodes": options.nodes or 1, "ntasks_per_node": options.tasks,
        "time": math.ceil(time_seconds(options.time or "0:10:00") / 60), "signal_delay_s": signal_delay_s(options),
    }
    for key in ("partition", "gpus_per_node", "cpus_per_task", "account", "qos", "constraint"):
        if getattr(options, key) is not None:
            parameters[key] = getattr(options, key)
    additional: dict[str, Any] = {}
    if options.mem is not None:
        additional["mem"] = options.mem
    for key, value in options.args:
        additional[key] = value if value != "" else True
    if additional:
        parameters["additional_parameters"] = additional
    return parameters


def sbatch_flags(parameters: dict[str, Any]) -> list[str]:
    """The sbatch command-line flags equal to the `#SBATCH` lines submitit writes for `parameters`."""
    flat = {key: value for key, value in parameters.items() if key not in ("signal_delay_s", "additional_parameters")}
    flat.update(parameters.get("additional_parameters", {}))
    return [f"--{key.replace('_', '-')}" if value is True else f"--{key.replace('_', '-')}={value}"
            for key, value in flat.items()]


def preflight(options: SlurmOptions, what: str) -> None:
    """Ask Slurm whether it would take the job (`sbatch --test-only`), so a request it refuses (unknown
    partition or account, GPUs a partition does not have, a limit exceeded) is refused before anything
    is queued. An unreachable controller raises `ControllerUnreachable`."""
    partition = options.partition or default_partition()
    if options.gpus_per_node and partition:
        gres = partition_gres(partition)
        if gres and not any("gpu" in entry for entry in gres):
            raise SlurmRefused(f"Slurm cannot run {what}: partition {partition!r} has no GPUs (its nodes' generic "
                               f"resources: {', '.join(gres)}), so --gpus-per-node {options.gpus_per_node} cannot be "
                               f"met. Choose a GPU partition (`sinfo -o '%P %G'`) or drop --gpus-per-node (on CPUs "
                               f"use --tasks-per-node; training then uses gloo)")
    parameters = executor_parameters(options, "atzoo-preflight", "atzoo preflight")
    done = _run(["sbatch", "--test-only", *sbatch_flags(parameters), "--output=/dev/null", "--wrap=true"])
    if done.returncode != 0:
        raise SlurmRefused(f"Slurm refuses {what}: {_message(done.stderr)}; nothing was queued")


def _clean_leftovers(folder: Path) -> None:
    """A failed sbatch leaves submitit's unsubmitted script and pickle behind: remove them."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.name.startswith(".submission_file_") or re.fullmatch(r"[0-9a-f]{32}\.pkl", path.name):
            path.unlink(missing_ok=True)


def _sbatch(runner: RunnerDir, job: Job, record: SlurmRecord, python: str) -> str:
    """Submit the job through submitit; returns the Slurm job id."""
    import submitit
    from submitit.core.utils import FailedJobError

    from atzoo.service.slurm_task import SlurmTask

    folder = runner.job_dir(job.id) / SLURM_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    executor = submitit.SlurmExecutor(folder=folder, python=shlex.quote(python))
    executor.update_parameters(**executor_parameters(record.options, job_name(runner, job.id),
                                                     f"atzoo runner {runner.path} job {job.id}"))
    task = SlurmTask(str(runner.path), runner.identity, job, python)
    noise = io.StringIO()
    try:
        with contextlib.redirect_stderr(noise), contextlib.redirect_stdout(noise):
            submitted = executor.submit(task)
    except FailedJobError as error:
        _clean_leftovers(folder)
        message = str(error)
        if any(marker in message for marker in UNREACHABLE):
            raise ControllerUnreachable(f"sbatch: {_message(message)}") from None
        raise SlurmRefused(f"sbatch: {_message(message)}") from None
    return str(submitted.job_id)


def submit_pending(runner: RunnerDir, records: SlurmRecords, job: Job, report: SyncReport,
                   python: str = sys.executable) -> None:
    """Submit a queued Slurm job that has no Slurm job yet, exactly once."""
    if not records.claim_submission(job.id):
        return
    record = records.get(job.id)
    assert record is not None
    try:
        known = records.known_ids(job.id)
        found = [slurm_id for slurm_id in active_ids_named(job_name(runner, job.id)) if slurm_id not in known]
        if found:
            slurm_id, detail = found[-1], "found under its job name (an earlier submission was cut off)"
        else:
            slurm_id, detail = _sbatch(runner, job, record, python), "sbatch"
    except ControllerUnreachable as error:
        records.submission_deferred(job.id, f"the Slurm controller is unreachable ({error}); it is submitted "
                                            f"when the controller is back (`atzoo runner status` or `sync`)")
        report.deferred.append((job.id, str(error)))
        return
    except SlurmRefused as error:
        records.note(job.id, "submission refused", str(error))
        records.set_state(job.id, "failed", reason=f"Slurm refused the job: {error}")
        report.refused.append((job.id, str(error)))
        return
    except ServiceError as error:
        records.submission_deferred(job.id, f"Slurm could not be asked ({error}); the next sync tries again")
        report.deferred.append((job.id, str(error)))
        return
    if not records.submitted(job.id, slurm_id, detail):
        with contextlib.suppress(ServiceError):
            scancel(slurm_id)
        records.note(job.id, "cancelled in Slurm", "the job was cancelled while it was being submitted", slurm_id)
    report.submitted.append((job.id, slurm_id))


def defer(runner: RunnerDir, job_id: int, reason: str) -> None:
    """Leave a new job queued in the runner directory: the controller could not be reached."""
    with SlurmRecords(runner) as records:
        records.submission_deferred(job_id, f"the Slurm controller is unreachable ({reason}); it is submitted "
                                            f"when the controller is back (`atzoo runner status` or `sync`)")


def record_job(runner: RunnerDir, job: Job, options: SlurmOptions, python: str = sys.executable) -> None:
    """The Slurm part of a new job's record: its options and the commands its first attempt runs."""
    steps = _steps_of(runner, job, python)
    with SlurmRecords(runner, create=True) as records:
        records.add(job.id, options, [shlex.join(step.argv) for step in steps])


def _steps_of(runner: RunnerDir, job: Job, python: str) -> list[Step]:
    single = replace(job, gpus=1)
    if job.kind == "train":
        return train_steps(single, runner, resume=False, python=python)
    return verify_steps(single, runner, python=python)


# -- time-limit advice ---------------------------------------------------------------------------


def _epoch_seconds(run: Path) -> list[float]:
    path = run / TRAIN_LOG
    if not path.is_file():
        return []
    seconds = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        with contextlib.suppress(json.JSONDecodeError, TypeError, ValueError):
            value = json.loads(line).get("seconds")
            if isinstance(value, (int, float)) and math.isfinite(value):
                seconds.append(float(value))
    return seconds


def time_limit_warning(runner: RunnerDir, queue: Queue, target: str, options: SlurmOptions,
                       checkpoint_every: int) -> str | None:
    """A warning when the time limit looks too short for the job to write its first checkpoint before
    Slurm's signal: judged from the newest finished run of the same method in this runner directory,
    else from a floor of five minutes (start-up alone takes a good part of a minute)."""
    limit = time_seconds(options.time or "0")
    usable = limit - signal_delay_s(options)
    for job in reversed(queue.jobs()):
        if job.kind != "train" or job.target != target or job.state != "done":
            continue
        epochs = _epoch_seconds(runner.job_run(job.id))
        if not epochs:
            continue
        needed = sum(epochs) / len(epochs) * checkpoint_every
        if needed >= usable:
            return (f"--time {options.time} may be too short to reach the first checkpoint: job {job.id} of {target} "
                    f"in this runner directory took {needed / checkpoint_every:.0f} s per epoch, a checkpoint is "
                    f"written every {checkpoint_every} epoch(s) (about {needed:.0f} s plus start-up), and Slurm "
                    f"signals the job {signal_delay_s(options)} s before its limit; a job requeued at its time "
                    f"limit before any checkpoint starts over every time")
        return None
    if limit < SHORT_TIME_S:
        return (f"--time {options.time} is under {SHORT_TIME_S // 60} minutes: start-up (Python, plugins, the "
                f"dataset) takes a good part of that, and no finished run of {target} in this runner directory tells "
                f"how long the first checkpoint takes; a job requeued before any checkpoint starts over every time")
    return None


# -- watching ------------------------------------------------------------------------------------


def atzoo_state(slurm_state: str) -> str | None:
    if slurm_state in QUEUED_STATES:
        return "queued"
    if slurm_state in RUNNING_STATES:
        return "running"
    if slurm_state == "COMPLETED":
        return "done"
    if slurm_state == "CANCELLED":
        return "cancelled"
    if slurm_state in FINISHED_STATES:
        return "failed"
    return None


def vanished_reason(slurm_id: str, job_id: int) -> str:
    return (f"vanished: Slurm no longer knows its Slurm job {slurm_id} (the controller lost its state, or the job "
            f"was purged); `atzoo runner retry {job_id}` submits it again and a train job resumes from its last "
            f"checkpoint")


def _log_reason(runner: RunnerDir, job_id: int, slurm_id: str) -> str | None:
    """The line that says why the job failed: from the job log, else from submitit's error log (a job
    that failed before its first step started)."""
    reason = error_line(log_tail(runner.job_log(job_id), 200))
    if reason is None:
        reason = error_line(log_tail(runner.job_dir(job_id) / SLURM_FOLDER / f"{slurm_id}_0_log.err", 200))
    return reason


def _finish(runner: RunnerDir, records: SlurmRecords, job: Job, seen: Seen, report: SyncReport) -> None:
    state = atzoo_state(seen.state)
    if state == "done":
        steps = _steps_of(runner, job, sys.executable)
        missing = [step.name for step in steps if not step.complete()]
        if not missing:
            if records.set_state(job.id, "done", returncode=0, result=job_result(job, runner)):
                report.changed.append((job.id, "done"))
            return
        state, reason = "failed", f"Slurm job {seen.slurm_id} COMPLETED but step(s) {', '.join(missing)} left no output"
    elif state == "cancelled":
        reason = f"cancelled in Slurm (Slurm job {seen.slurm_id} {seen.state}, not through `atzoo runner cancel`)"
    else:
        detail = _log_reason(runner, job.id, seen.slurm_id)
        exit_code = f" (exit code {seen.exit_code})" if seen.exit_code and seen.exit_code != "0:0" else ""
        reason = f"Slurm job {seen.slurm_id} ended {seen.state}{exit_code}" + (f": {detail}" if detail else "")
    assert state is not None
    if records.set_state(job.id, state, reason=reason, log_tail_text=log_tail(runner.job_log(job.id))):
        report.changed.append((job.id, state))


def _judge(runner: RunnerDir, records: SlurmRecords, job: Job, record: SlurmRecord, controller: dict[str, Seen] | None,
           accounting: dict[str, Seen] | None, report: SyncReport) -> None:
    slurm_id = record.slurm_id
    assert slurm_id is not None
    name = job_name(runner, job.id)
    seen = controller.get(slurm_id) if controller is not None else None
    if seen is not None and seen.name != name:
        seen = None
    booked = accounting.get(slurm_id) if accounting is not None else None
    if booked is not None and booked.name != name:
        booked = None
    if seen is None and booked is not None and (controller is None or booked.state in FINISHED_STATES):
        seen = booked
    if seen is None:
        submitted_at = max((entry["time"] for entry in records.history(job.id) if entry["event"] == "submitted"),
                           default=0.0)
        if controller is not None and time.time() - submitted_at > VANISHED_GRACE_S:
            if records.set_state(job.id, "failed",
                                 reason=vanished_reason(slurm_id, job.id)):
                records.note(job.id, "vanished", f"squeue and sacct do not know Slurm job {slurm_id} as {name}",
                             slurm_id)
                report.changed.append((job.id, "failed"))
        return
    elapsed = booked.elapsed_s if booked is not None and booked.elapsed_s is not None else seen.elapsed_s
    records.observe(job.id, slurm_id, seen.state, seen.node or (booked.node if booked else None), elapsed)
    state = atzoo_state(seen.state)
    if state in ("queued", "running"):
        if state != job.state:
            report.changed.append((job.id, state))
        records.set_state(job.id, state,
                          reason=None if state == "running" else f"{SCHEDULER_PREFIX}{seen.state}")
    elif state is not None:
        _finish(runner, records, job, seen, report)


def sync(runner: RunnerDir, queue: Queue, *, job_ids: set[int] | None = None,
         python: str = sys.executable) -> SyncReport:
    """Bring the Slurm jobs' records up to date: submit those still waiting for the controller, read the
    scheduler's state of the others, and record what changed."""
    report = SyncReport()
    with SlurmRecords(runner) as records:
        if not records.exists:
            return report
        slurm_records = records.all()
        jobs = [job for job in queue.jobs() if job.backend == "slurm" and job.state not in TERMINAL
                and (job_ids is None or job.id in job_ids)]
        if not jobs:
            return report
        missing = missing_client_commands()
        if missing:
            report.problems.append(f"{len(jobs)} Slurm job(s) not refreshed: {', '.join(missing)} not installed here")
            return report
        for job in jobs:
            if job.id not in slurm_records:
                records.set_state(job.id, "failed",
                                  reason="its Slurm options were never recorded (the submitting command was "
                                         "interrupted); submit it again")
                report.changed.append((job.id, "failed"))
            elif slurm_records[job.id].slurm_id is None and job.state == "queued":
                submit_pending(runner, records, job, report, python)
        latest = records.all()
        watched = [(job, latest[job.id]) for job in jobs if job.id in latest and latest[job.id].slurm_id is not None]
        ids = sorted({record.slurm_id for _, record in watched if record.slurm_id})
        try:
            controller: dict[str, Seen] | None = controller_view(ids)
        except ControllerUnreachable as error:
            controller = None
            report.problems.append(f"the Slurm controller is unreachable ({error}); states may be stale")
        accounting = accounting_view(ids)
        for job, record in watched:
            _judge(runner, records, job, record, controller, accounting, report)
    return report


# -- user actions --------------------------------------------------------------------------------


def cancel(runner: RunnerDir, queue: Queue, job: Job) -> Job:
    """Cancel a Slurm job: at once if Slurm does not have it yet, else through `scancel`."""
    if job.state in TERMINAL:
        raise ServiceError(f"job {job.id} is already {job.state}; nothing to cancel")
    with SlurmRecords(runner) as records:
        record = records.get(job.id)
        if record is None or record.slurm_id is None:
            cancelled = queue.request_cancel(job.id)
            records.note(job.id, "cancelled", "before it reached Slurm")
            return cancelled
        try:
            scancel(record.slurm_id)
        except ControllerUnreachable as error:
            raise ServiceError(f"job {job.id} (Slurm job {record.slurm_id}) was not cancelled: {error}; nothing "
                               f"changed, try again when the controller is back") from None
        except SlurmRefused as error:
            sync(runner, queue, job_ids={job.id})
            now = queue.get(job.id)
            if now.state in TERMINAL:
                raise ServiceError(f"job {job.id} is already {now.state}; nothing to cancel") from None
            raise ServiceError(f"job {job.id} was not cancelled: {error}") from None
        reason = f"cancelled by request (scancel {record.slurm_id})"
        records.set_state(job.id, "cancelled", reason=reason)
        return queue.get(job.id)


def prepare_retry(runner: RunnerDir, job: Job) -> None:
    """Before a failed or cancelled Slurm job goes back to the queue: its previous Slurm job must be over
    (never two attempts at once); it is then forgotten, so that the next sync submits a new one."""
    with SlurmRecords(runner) as records:
        record = records.get(job.id)
        if record is None or record.slurm_id is None:
            return
        with contextlib.suppress(ControllerUnreachable):
            still = controller_view([record.slurm_id]).get(record.slurm_id)
            if still is not None and still.name == job_name(runner, job.id) and still.state not in FINISHED_STATES:
                raise ServiceError(f"job {job.id}'s Slurm job {record.slurm_id} is still {still.state}; retry once "
                                   f"it has ended (`atzoo runner status`)")
        records.forget_slurm_job(job.id, f"previous Slurm job {record.slurm_id}")


def foreign_job_hint(runner: RunnerDir, job_id: int) -> str | None:
    """When JOB is not a job of this runner directory but a Slurm job id: whose job it is."""
    if missing_client_commands():
        return None
    try:
        seen = controller_view([str(job_id)]).get(str(job_id))
        if seen is None:
            seen = (accounting_view([str(job_id)]) or {}).get(str(job_id))
    except ServiceError:
        return None
    if seen is None:
        return None
    owner = parse_job_name(seen.name)
    if owner is None:
        return (f"{job_id} is a Slurm job id ({seen.name!r}, {seen.state}), not an atzoo job of this runner "
                f"directory; atzoo leaves it alone (use Slurm's own commands for it)")
    identity, atzoo_id = owner
    if identity == runner.identity[:12]:
        return f"Slurm job {job_id} is atzoo job {atzoo_id} of this runner directory: use {atzoo_id}"
    return (f"Slurm job {job_id} belongs to another atzoo runner directory (runner id {identity}..., its job "
            f"{atzoo_id}); nothing was done. Use `atzoo runner --runner-dir THAT_DIR ...` with job {atzoo_id}")


def details(runner: RunnerDir) -> dict[int, dict[str, Any]]:
    """Slurm job id, scheduler state, node and elapsed time of every Slurm job (for status rows)."""
    with SlurmRecords(runner) as records:
        return {job_id: {"slurm_job": record.slurm_id, "scheduler_state": record.scheduler_state,
                         "node": record.node, "elapsed_s": record.elapsed_s}
                for job_id, record in records.all().items()}


def describe(runner: RunnerDir, job: Job) -> dict[str, Any]:
    """The whole record of a Slurm job: options, commands, Slurm ids, state history, files."""
    with SlurmRecords(runner) as records:
        record = records.get(job.id)
        history = records.history(job.id)
    folder = runner.job_dir(job.id) / SLURM_FOLDER
    return {"slurm_job": record.slurm_id if record else None,
            "options": record.options.to_json() if record else None,
            "command": record.command if record else None,
            "scheduler_state": record.scheduler_state if record else None,
            "node": record.node if record else None,
            "elapsed_s": record.elapsed_s if record else None,
            "submitit_folder": str(folder),
            "history": history}
