"""What a job runs: its steps, each one `atzoo` command line in its own subprocess.

- train: `python -m atzoo --strict train METHOD --data ROOT --out JOB/run --set ...` (with `--resume`
  once the run directory exists), under `python -m torch.distributed.run --nproc-per-node N` when the
  job asks for N > 1 GPUs; then, if the job asked for a leaderboard entry,
  `python -m atzoo submit JOB/run ENTRY_ARGS...` as a second step of the same job (the entry's
  details, such as `--weights-repo` and `--submitter`, are given at submission).
- verify: `python -m atzoo --strict leaderboard verify ENTRY --data ROOT`.

A step whose output is already complete (a finished run directory, a written entry) is skipped, so
an attempt that resumes after its worker was lost redoes only what is missing.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atzoo.runner.rundir import CONFIG, METRICS_FILE, MODEL
from atzoo.service.queue import Job
from atzoo.service.runnerdir import RunnerDir



@dataclass(frozen=True)
class Step:
    """One command of a job. `outputs`: files whose presence means it already ran to its end.
    `marker`: for a step whose outputs live elsewhere (an entry in the registry), a file the worker
    writes once the step succeeded."""

    name: str
    argv: list[str]
    outputs: tuple[Path, ...] = ()
    marker: Path | None = None

    def complete(self) -> bool:
        files = (*self.outputs, *([self.marker] if self.marker else []))
        return bool(files) and all(path.is_file() for path in files)


def train_spec(method: str, data_root: Path, settings: list[str], *, entry: bool,
               entry_args: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    return {"method": method, "data_root": str(data_root), "settings": list(settings), "entry": entry,
            "entry_args": list(entry_args)}


def verify_spec(entry: Path, data_root: Path) -> dict[str, Any]:
    return {"entry": str(entry), "data_root": str(data_root)}


def atzoo_command(*args: str, gpus: int = 1, python: str = sys.executable) -> list[str]:
    """`python -m atzoo ARGS`, or its torchrun launch with one process per GPU."""
    if gpus > 1:
        return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={gpus}",
                "-m", "atzoo", *args]
    return [python, "-m", "atzoo", *args]


def prepare_run_dir(run: Path) -> bool:
    """Whether the train step resumes. A run directory without `config.json` was cut off before its
    first write (nothing to resume from) and is cleared so that training can start it afresh."""
    if (run / CONFIG).is_file():
        return True
    if run.exists():
        shutil.rmtree(run)
    return False


def train_steps(job: Job, runner: RunnerDir, *, resume: bool, python: str = sys.executable) -> list[Step]:
    spec = job.spec
    run = runner.job_run(job.id)
    args = ["--strict", "train", spec["method"], "--data", spec["data_root"], "--out", str(run)]
    for setting in spec["settings"]:
        args += ["--set", setting]
    if resume:
        args.append("--resume")
    steps = [Step("train", atzoo_command(*args, gpus=job.gpus, python=python), (run / MODEL, run / METRICS_FILE))]
    if spec.get("entry"):
        steps.append(Step("entry", atzoo_command("submit", str(run), *spec.get("entry_args", []), python=python),
                          marker=runner.job_dir(job.id) / "entry.done"))
    return steps


def verify_steps(job: Job, runner: RunnerDir, python: str = sys.executable) -> list[Step]:
    spec = job.spec
    return [Step("verify", atzoo_command("--strict", "leaderboard", "verify", spec["entry"], "--data",
                                         spec["data_root"], python=python),
                 marker=runner.job_dir(job.id) / "verify.done")]


def job_steps(job: Job, runner: RunnerDir, *, python: str = sys.executable) -> list[Step]:
    """The steps of `job`'s next attempt (preparing a train job's run directory for it)."""
    if job.kind == "train":
        resume = prepare_run_dir(runner.job_run(job.id))
        return train_steps(job, runner, resume=resume, python=python)
    return verify_steps(job, runner, python=python)


def job_result(job: Job, runner: RunnerDir) -> dict[str, Any]:
    """What a finished job leaves behind, recorded in the queue."""
    if job.kind == "train":
        result: dict[str, Any] = {"run": str(runner.job_run(job.id))}
        if job.spec.get("entry"):
            result["entry_submitted"] = True
        return result
    return {"entry": job.spec["entry"]}


def read_events(events: Path) -> list[dict[str, Any]]:
    """The job's events (start and end of each attempt); a line torn by a crash is skipped."""
    if not events.is_file():
        return []
    found = []
    for line in events.read_text(encoding="utf-8", errors="replace").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            event = json.loads(line)
            if isinstance(event, dict):
                found.append(event)
    return found


def count_starts(events: Path) -> int:
    """How many attempts of the job have started (their `start` events)."""
    return sum(event.get("event") == "start" for event in read_events(events))
