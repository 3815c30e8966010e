"""Shared pieces of the Slurm tests: tiny settings, waiting on the scheduler, reading runs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from atzoo.service import get_job
from atzoo.service.control import sync_slurm

CLUSTER_SCRIPT = Path(__file__).with_name("local-cluster.sh")
TINY = ["iters_per_epoch=2", "image_size=[32,16]", "num_workers=0", "num_persons=4", "num_instances=4",
        "eval_batch_size=64", "cache=false"]
WAIT_S = 600.0


def set_flags(settings: list[str]) -> list[str]:
    return [part for setting in settings for part in ("--set", setting)]


def atzoo(*args: str, env: dict | None = None, timeout: float = WAIT_S) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "atzoo", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def wait_for(condition, what: str, timeout: float = WAIT_S, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def wait_state(runner_dir: Path, job_id: int, *states: str, timeout: float = WAIT_S):
    """Sync with Slurm until the atzoo job reaches one of `states`; the job."""
    def reached():
        sync_slurm(runner_dir)
        job = get_job(runner_dir, job_id)
        return job if job.state in states else None

    return wait_for(reached, f"job {job_id} to be {' or '.join(states)}", timeout)


def slurm_state(slurm_id: str) -> str:
    done = subprocess.run(["scontrol", "show", "job", slurm_id], capture_output=True, text=True, timeout=60)
    for part in done.stdout.split():
        if part.startswith("JobState="):
            return part.split("=", 1)[1]
    return ""


def train_log_epochs(run: Path) -> list[int]:
    path = run / "train_log.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line)["epoch"] for line in path.read_text().splitlines() if line.strip()]


def same_tensors(first: Path, second: Path) -> bool:
    from safetensors.torch import load_file

    a, b = load_file(str(first)), load_file(str(second))
    return sorted(a) == sorted(b) and all(bool((a[key] == b[key]).all()) for key in a)


def measured(run: Path) -> dict:
    """A run's metrics.json without the evaluation's date: two runs of the same job measure the same numbers on
    the same data with the same weights, at different times."""
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["provenance"].pop("date")
    return metrics


def cluster(*args: str) -> None:
    subprocess.run(["bash", str(CLUSTER_SCRIPT), *args], check=True, timeout=300, capture_output=True)
