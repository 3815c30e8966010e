"""What runs inside a Slurm allocation: one atzoo job's steps, started by submitit on every task.

Slurm starts one task per GPU (or `--tasks-per-node` tasks on a CPU partition) and submitit calls a
`SlurmTask` in each. The task learns its place in the job from Slurm through submitit's
`TorchDistributedEnvironment` (rank, world size, master address and port), exports it the way torchrun
does, and runs the same `python -m atzoo --strict train ... --out JOB/run` command a local worker runs:
the training takes the runner's one DDP path (`atzoo.runner.distributed`), gloo on CPU, NCCL on GPUs.

Requeue, preemption and time limits need no state of their own: the run directory is the state. An
attempt resumes with `--resume` whenever the run directory has its `config.json` (from the last epoch
checkpoint, bit-exact) and skips every step whose output is complete, so a job that already finished
does nothing when Slurm starts it again. Only rank 0 writes (run directory, job log, events, markers);
the runner's queue file is never written from inside the allocation.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from submitit.helpers import Checkpointable, DelayedSubmission

from atzoo.errors import ServiceError
from atzoo.io import write_text_atomic
from atzoo.runner.rundir import CONFIG
from atzoo.service.jobs import Step, count_starts, job_result, prepare_run_dir, train_steps, verify_steps
from atzoo.service.processes import JOB_ENV, child_setup, job_mark, kill_group
from atzoo.service.queue import Job
from atzoo.service.runnerdir import RunnerDir
from atzoo.service.worker import REASON_SCAN_LINES, failure_reason, log_tail, now_iso

LOCK_FILE = "slurm.lock"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGKILL, signal.SIGINT)


class StepFailed(ServiceError):
    """A step of the job ended with an error (the Slurm job then ends FAILED with this reason)."""


class StepStopped(ServiceError):
    """A step was stopped by a signal from outside (scancel, requeue, preemption, time limit)."""


def task_log(runner: RunnerDir, job_id: int, rank: int) -> Path:
    """Rank 0 writes the job's log; every other task of a multi-task job has its own."""
    return runner.job_log(job_id) if rank == 0 else runner.job_dir(job_id) / f"task{rank}.log"


def _append_line(path: Path, text: str) -> None:
    """Append a line, on a line of its own even after a progress bar's carriage returns."""
    with open(path, "a+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - 1))
        ends_open = size > 0 and handle.read(1) != b"\n"
        handle.write((("\n" if ends_open else "") + text + "\n").encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())


def _start_step(argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """The step in its own session, dying with the task (PR_SET_PDEATHSIG). It ignores SIGUSR2, the
    signal submitit asks Slurm to send before a time limit or preemption: the task answers it
    (requeue), while the training goes on until Slurm stops the job."""
    setup = child_setup(None)

    def prepare() -> None:
        setup()
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)

    with open(log, "ab") as handle:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, preexec_fn=prepare)


class SlurmTask(Checkpointable):
    """One atzoo job as a submitit callable. `job` is the queue row at submission (kind and spec)."""

    def __init__(self, runner_path: str, runner_identity: str, job: Job, python: str) -> None:
        self.runner_path = runner_path
        self.runner_identity = runner_identity
        self.job = job
        self.python = python

    @property
    def runner(self) -> RunnerDir:
        return RunnerDir(Path(self.runner_path), self.runner_identity)

    def __call__(self) -> dict[str, Any]:
        import submitit

        environment = submitit.JobEnvironment()
        rank, world = environment.global_rank, environment.num_tasks
        if world > 1:
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        runner, job = self.runner, self.job
        runner.job_dir(job.id).mkdir(parents=True, exist_ok=True)
        with self._attempt_lock(runner, rank):
            attempt = self._begin(runner, environment.job_id, rank, world)
            try:
                for step in self._steps(runner, rank):
                    self._run_step(runner, step, rank, world, attempt, environment.job_id)
            except (StepFailed, StepStopped) as error:
                self._event(runner, rank, "end", attempt, state="stopped" if isinstance(error, StepStopped)
                            else "failed", reason=str(error))
                raise
            self._event(runner, rank, "end", attempt, state="done")
        return job_result(job, runner)

    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission:
        """Called by submitit (rank 0) when Slurm signals a time limit or preemption, before it requeues
        the job. The run directory already holds the last epoch checkpoint; the next attempt resumes
        from it, so the same call is submitted again."""
        runner = self.runner
        with contextlib.suppress(OSError):
            _append_line(runner.job_log(self.job.id),
                         f"==== job {self.job.id}: Slurm signalled a time limit or preemption at {now_iso()}; "
                         f"requeued, the next attempt resumes from the last epoch checkpoint")
            self._event(runner, 0, "end", count_starts(runner.job_events(self.job.id)), state="requeued",
                        reason="Slurm signalled a time limit or preemption")
        return super().checkpoint(*args, **kwargs)

    # -- the attempt -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _attempt_lock(self, runner: RunnerDir, rank: int) -> Iterator[None]:
        """Rank 0 holds the job's lock file for the whole attempt, so an attempt never starts while a
        previous one of the same job is still ending (on a shared file system that supports flock)."""
        if rank != 0:
            yield
            return
        with open(runner.job_dir(self.job.id) / LOCK_FILE, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _begin(self, runner: RunnerDir, slurm_id: str, rank: int, world: int) -> int:
        attempt = count_starts(runner.job_events(self.job.id)) + (1 if rank == 0 else 0)
        self._event(runner, rank, "start", attempt, slurm_job=slurm_id, node=socket.gethostname(), tasks=world,
                    restart_count=int(os.environ.get("SLURM_RESTART_COUNT", "0")), pid=os.getpid())
        return attempt

    def _event(self, runner: RunnerDir, rank: int, event: str, attempt: int, **details: object) -> None:
        if rank != 0:
            return
        record = {"event": event, "job": self.job.id, "attempt": attempt, "backend": "slurm", "time": time.time(),
                  **details}
        _append_line(runner.job_events(self.job.id), json.dumps(record))

    def _steps(self, runner: RunnerDir, rank: int) -> list[Step]:
        """The job's steps with one process per task (Slurm launched the tasks: no torchrun)."""
        job = replace(self.job, gpus=1)
        if job.kind != "train":
            return verify_steps(job, runner, python=self.python) if rank == 0 else []
        run = runner.job_run(job.id)
        resume = prepare_run_dir(run) if rank == 0 else (run / CONFIG).is_file()
        steps = train_steps(job, runner, resume=resume, python=self.python)
        return steps if rank == 0 else [step for step in steps if step.name == "train"]

    def _environment(self, attempt: int) -> dict[str, str]:
        env = {**os.environ, JOB_ENV: job_mark(self.runner_identity, self.job.id, attempt), "PYTHONUNBUFFERED": "1"}
        cpus = os.environ.get("SLURM_CPUS_PER_TASK")
        if cpus and "OMP_NUM_THREADS" not in os.environ:
            env["OMP_NUM_THREADS"] = cpus
        return env

    def _run_step(self, runner: RunnerDir, step: Step, rank: int, world: int, attempt: int, slurm_id: str) -> None:
        log = task_log(runner, self.job.id, rank)
        if step.complete():
            if rank == 0:
                _append_line(log, f"==== job {self.job.id} attempt {attempt} step {step.name}: already complete, "
                                  f"skipped (slurm job {slurm_id})")
            return
        _append_line(log, f"==== job {self.job.id} attempt {attempt} step {step.name} slurm job {slurm_id} task "
                          f"{rank}/{world} on {socket.gethostname()} at {now_iso()}: {shlex.join(step.argv)}")
        process = _start_step(step.argv, log, self._environment(attempt))
        try:
            returncode = process.wait()
        finally:
            if process.poll() is None:
                kill_group(process)
        _append_line(log, f"==== step {step.name} ended with status {returncode} at {now_iso()}")
        if returncode == 0:
            if step.marker is not None and rank == 0:
                write_text_atomic(step.marker, f"{now_iso()}\n")
            return
        if returncode < 0 and -returncode in STOP_SIGNALS:
            raise StepStopped(f"{step.name} step stopped by {signal.Signals(-returncode).name} (scancel, requeue, "
                              f"preemption or time limit)")
        raise StepFailed(failure_reason(step, returncode, log_tail(log, REASON_SCAN_LINES), None))
