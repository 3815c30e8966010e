"""A worker: claims jobs one at a time and runs each step in its own subprocess, watching over it.

The worker is a single thread. While a step runs it wakes every `poll_s` to (1) send the job's
heartbeat (and learn whether the job was cancelled or taken over), (2) enforce the time limit and
(3) notice its own shutdown signal. A step that crashes, is killed by a signal, runs out of memory or
time ends the job as failed with the reason and the tail of its log; the worker goes on.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Callable

from atzoo.errors import FormatError
from atzoo.io import read_json, write_json_atomic, write_text_atomic
from atzoo.service.jobs import Step, job_result, job_steps
from atzoo.service.processes import JOB_ENV, job_mark, kill_group, kill_job_processes, spawn, stop_group
from atzoo.service.queue import JOB_RECORD, JOB_RECORD_FORMAT, Claim, Job, Queue, open_queue
from atzoo.service.runnerdir import RunnerDir

LOG_TAIL_LINES = 30
LOG_TAIL_BYTES = 16_384
REASON_SCAN_LINES = 200
REASON_DETAIL_CHARS = 200
HEADER = "==== "
STEP_START = "==== job "
USER_ERROR = "Error:"
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b: \S")
DEFAULT_STALE_AFTER_S = 60.0
MEMORY_MARKERS = ("MemoryError", "std::bad_alloc", "Cannot allocate memory", "DefaultCPUAllocator: can't allocate")


@dataclass(frozen=True)
class WorkerOptions:
    gpus: tuple[str, ...] = ()
    max_jobs: int | None = None
    until_empty: bool = False
    heartbeat_s: float = 5.0
    stale_after_s: float = DEFAULT_STALE_AFTER_S
    poll_s: float = 1.0
    grace_s: float = 10.0
    max_attempts: int = 5
    handle_signals: bool = True

    @property
    def capacity(self) -> int:
        """How many GPUs a job may ask for here; a worker without `--gpus` runs one-device jobs."""
        return max(1, len(self.gpus))


@dataclass
class Outcome:
    """How an attempt ended: a terminal state, `released` (handed back) or `lost` (taken over)."""

    state: str
    reason: str | None = None
    returncode: int | None = None


@dataclass
class WorkerSummary:
    worker: str
    finished: dict[str, int] = field(default_factory=dict)

    def count(self, state: str) -> None:
        self.finished[state] = self.finished.get(state, 0) + 1


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log, progress bars' carriage-return redraws collapsed to their final state."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - LOG_TAIL_BYTES))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    shown = [line.rsplit("\r", 1)[-1].rstrip() for line in text.split("\n")]
    return "\n".join([line for line in shown if line][-lines:])


def error_line(tail: str) -> str | None:
    """The line of the last step's output that says why it failed: its last `Error: ...` line (how
    atzoo reports a user error), else its last exception line, else its last line with any text.
    Only what follows the last step's `==== job ...` header counts (earlier steps' output is not its own)."""
    lines = tail.split("\n")
    headers = [i for i, line in enumerate(lines) if line.startswith(STEP_START)]
    own = [line.strip() for line in lines[(headers[-1] + 1 if headers else 0):]]
    own = [line for line in own if line and not line.startswith(HEADER)]
    for matches in (lambda line: line.startswith(USER_ERROR), EXCEPTION_LINE.match,
                    lambda line: any(c.isalnum() for c in line)):
        found = [line for line in own if matches(line)]
        if found:
            line = found[-1]
            return line if len(line) <= REASON_DETAIL_CHARS else line[:REASON_DETAIL_CHARS - 1] + "…"
    return None


def failure_reason(step: Step, returncode: int, tail: str, memory_limit_gb: float | None) -> str:
    """Why a step failed, in one line for `status`. `tail`: the end of the job's log, the step's
    header line and end line included."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"{step.name} step killed by signal {name}"
    if memory_limit_gb and any(marker in tail for marker in MEMORY_MARKERS):
        return f"{step.name} step ran out of memory (limit {memory_limit_gb:g} GB; exit status {returncode})"
    detail = error_line(tail)
    return f"{step.name} step exited with status {returncode}" + (f": {detail}" if detail else "")


def folder_problem(runner: RunnerDir, job: Job) -> str | None:
    """Why the job must not use its folder: it was not created for this job by this runner directory's
    queue (a restored backup, a folder left by a half-finished submit). A job queued before folders were
    made at submission gets its folder now, when none exists."""
    folder = runner.job_dir(job.id)
    record_path = folder / JOB_RECORD
    if not folder.exists():
        folder.mkdir(parents=True)
        write_json_atomic(record_path, {"format": JOB_RECORD_FORMAT, "runner": runner.identity, "id": job.id,
                                        "kind": job.kind, "target": job.target, "spec": job.spec, "gpus": job.gpus,
                                        "time_limit_s": job.time_limit_s, "memory_limit_gb": job.memory_limit_gb,
                                        "submitted": job.submitted})
        return None
    try:
        record = read_json(record_path)
    except (OSError, FormatError):
        record = None
    if (not isinstance(record, dict) or record.get("runner") != runner.identity or record.get("id") != job.id
            or record.get("submitted") != job.submitted):
        return (f"its folder {folder} was not created for this job (its {JOB_RECORD} is missing or names another "
                f"job); it is left untouched")
    return None


class Worker:
    """Runs the jobs of one runner directory. `run()` returns when told to stop, after `max_jobs`
    jobs, or (with `until_empty`) once nothing is queued or running."""

    def __init__(self, runner: RunnerDir, options: WorkerOptions | None = None, *,
                 worker_id: str | None = None, say: Callable[[str], None] | None = None) -> None:
        self.runner = runner
        self.options = options or WorkerOptions()
        self.id = worker_id or new_worker_id()
        self._say = say or (lambda message: print(message, file=sys.stderr, flush=True))
        self._stopping = False

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> WorkerSummary:
        summary = WorkerSummary(self.id)
        if self.options.handle_signals:
            self._install_signal_handlers()
        with open_queue(self.runner) as queue:
            self._say(f"worker {self.id} on {self.runner.path} (capacity {self.options.capacity})")
            while not self._stopping:
                claim = queue.claim(self.id, capacity=self.options.capacity,
                                    stale_after_s=self.options.stale_after_s, max_attempts=self.options.max_attempts)
                if claim is None:
                    if self.options.until_empty and queue.idle(self.options.capacity):
                        break
                    self._sleep(self.options.poll_s)
                    continue
                state = self._run_claim(queue, claim)
                if state in ("done", "failed", "cancelled"):
                    summary.count(state)
                if self.options.max_jobs and sum(summary.finished.values()) >= self.options.max_jobs:
                    break
            waiting = queue.queued_beyond(self.options.capacity)
        stopped = f"worker {self.id} stopped: {summary.finished or 'no jobs'}"
        if waiting:
            stopped += (f"; {waiting} queued job{'s' if waiting > 1 else ''} need{'' if waiting > 1 else 's'} "
                        f"more devices than this worker's {self.options.capacity}")
        self._say(stopped)
        return summary

    def stop(self) -> None:
        self._stopping = True

    def _install_signal_handlers(self) -> None:
        def handler(signum: int, frame: object) -> None:
            self._say(f"worker {self.id}: {signal.Signals(signum).name} received, stopping")
            self._stopping = True

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < deadline:
            time.sleep(min(0.1, seconds))

    # -- one job -------------------------------------------------------------------------------

    def _event(self, job: Job, event: str, **details: object) -> None:
        record = {"event": event, "job": job.id, "attempt": job.attempts, "worker": self.id, "time": time.time(),
                  **details}
        path = self.runner.job_events(job.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def _run_claim(self, queue: Queue, claim: Claim) -> str:
        job = claim.job
        problem = folder_problem(self.runner, job)
        if problem:
            queue.finish(job, "failed", reason=problem)
            self._say(f"job {job.id}: failed ({problem})")
            return "failed"
        if claim.reclaimed:
            killed = kill_job_processes(self.runner.identity, job.id)
            self._event(job, "reclaim", previous_worker=claim.previous_worker, killed=killed)
            self._say(f"job {job.id}: taken over from lost worker {claim.previous_worker}"
                      + (f" (killed leftover pids {killed})" if killed else ""))
        if job.cancel_requested:
            outcome = Outcome("cancelled", "cancelled while its worker was lost")
        else:
            self._event(job, "start", pid=os.getpid())
            self._say(f"job {job.id} ({job.kind} {job.target}): attempt {job.attempts}")
            outcome = self._run_steps(queue, job)
        return self._record(queue, job, outcome)

    def _record(self, queue: Queue, job: Job, outcome: Outcome) -> str:
        self._event(job, "end", state=outcome.state, reason=outcome.reason)
        log = self.runner.job_log(job.id)
        if outcome.state == "released":
            queue.release(job, outcome.reason or "worker stopped")
        elif outcome.state == "lost":
            pass
        elif outcome.state == "done":
            queue.finish(job, "done", returncode=0, result=job_result(job, self.runner))
        else:
            queue.finish(job, outcome.state, reason=outcome.reason, returncode=outcome.returncode,
                         log_tail=log_tail(log))
        self._say(f"job {job.id}: {outcome.state}" + (f" ({outcome.reason})" if outcome.reason else ""))
        return outcome.state

    def _run_steps(self, queue: Queue, job: Job) -> Outcome:
        started = time.monotonic()
        for step in job_steps(job, self.runner):
            if step.complete():
                continue
            outcome = self._run_step(queue, job, step, started)
            if outcome is not None:
                return outcome
        return Outcome("done")

    def _environment(self, job: Job) -> dict[str, str]:
        env = {**os.environ, JOB_ENV: job_mark(self.runner.identity, job.id, job.attempts), "PYTHONUNBUFFERED": "1"}
        if self.options.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(self.options.gpus[: job.gpus])
        return env

    def _run_step(self, queue: Queue, job: Job, step: Step, started: float) -> Outcome | None:
        """Run one step to its end; None when it succeeded, else how the attempt ended."""
        log = self.runner.job_log(job.id)
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"==== job {job.id} attempt {job.attempts} step {step.name} worker {self.id} "
                         f"at {now_iso()}: {shlex.join(step.argv)}\n")
        process = spawn(step.argv, log=log, env=self._environment(job), cwd=None,
                        memory_limit_gb=job.memory_limit_gb)
        self._event(job, "spawn", step=step.name, pid=process.pid)
        if not queue.set_pid(job, process.pid):
            kill_group(process)
            return Outcome("lost")
        outcome = self._watch(queue, job, process, started)
        self._kill_leftovers(job)
        returncode = process.returncode
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"\n==== step {step.name} ended with status {returncode} at {now_iso()}\n")
        if outcome is not None:
            return outcome
        if returncode != 0:
            reason = failure_reason(step, returncode, log_tail(log, REASON_SCAN_LINES), job.memory_limit_gb)
            return Outcome("failed", reason, returncode)
        if step.marker is not None:
            write_text_atomic(step.marker, f"{now_iso()}\n")
        return None

    def _watch(self, queue: Queue, job: Job, process: subprocess.Popen, started: float) -> Outcome | None:
        """Wait for the step, keeping the heartbeat; stop it early on cancel, time limit, takeover or
        shutdown (returning how the attempt ended), else None once it exits by itself."""
        next_beat = time.monotonic() + self.options.heartbeat_s
        limit = job.time_limit_s
        while True:
            try:
                process.wait(timeout=min(self.options.poll_s, self.options.heartbeat_s))
                return None
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + self.options.heartbeat_s
                owned, cancel = queue.heartbeat(job)
                if not owned:
                    kill_group(process)
                    return Outcome("lost", "another worker took the job over")
                if cancel:
                    returncode = stop_group(process, self.options.grace_s)
                    return Outcome("cancelled", "cancelled by request", returncode)
            if limit is not None and time.monotonic() - started > limit:
                returncode = stop_group(process, self.options.grace_s)
                return Outcome("failed", f"time limit of {limit:g} s exceeded; stopped", returncode)
            if self._stopping:
                stop_group(process, self.options.grace_s)
                return Outcome("released", f"worker {self.id} stopped; the job resumes on the next worker")

    def _kill_leftovers(self, job: Job) -> None:
        """Kill every process of this attempt still alive once its step ended or was stopped: one that
        left the step's process group (a plugin's subprocess in a session of its own) included."""
        killed = kill_job_processes(self.runner.identity, job.id, attempt=job.attempts)
        if killed:
            self._say(f"job {job.id}: killed leftover processes {killed}")
