"""A real Slurm cluster for the Slurm backend's tests: the one `tests/slurm/local-cluster.sh` starts (or any
cluster the Slurm commands here reach). Without one the tests skip, unless `ATZOO_REQUIRE_SLURM=1`
(set by CI), where a missing cluster fails them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CLUSTER_SCRIPT = Path(__file__).with_name("local-cluster.sh")
REQUIRE = "ATZOO_REQUIRE_SLURM"


def cluster_problem() -> str | None:
    """Why no Slurm cluster can take jobs from here, or None."""
    missing = [command for command in ("sbatch", "squeue", "sacct", "scontrol", "srun") if shutil.which(command) is None]
    if missing:
        return f"Slurm's commands are not installed ({', '.join(missing)} missing)"
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=60)
        nodes = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, timeout=60)
        accounting = subprocess.run(["sacct", "-n", "-X", "-j", "1"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "the Slurm controller does not answer"
    if ping.returncode != 0 or "UP" not in ping.stdout:
        return f"no Slurm controller answers: {ping.stdout.strip()} {ping.stderr.strip()}"
    if not any(state in nodes.stdout for state in ("idle", "mixed", "allocated")):
        return f"no Slurm node can take jobs: {nodes.stdout.strip()!r}"
    if accounting.returncode != 0:
        return f"Slurm accounting (sacct) does not work: {accounting.stderr.strip()}"
    return None


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    problem = cluster_problem()
    if problem is None:
        return
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(f"{REQUIRE}=1 but {problem}; start one with {CLUSTER_SCRIPT}")
    pytest.skip(f"{problem}; start a local cluster with {CLUSTER_SCRIPT} (root)")


@pytest.fixture
def job_env(monkeypatch) -> None:
    """Slurm jobs inherit the submitter's environment: one thread per task, as the reference runs."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
