"""A job's processes: started in their own process group, tied to their worker's life, and found again
after the worker is gone.

Every process of a job carries `ATZOO_SERVICE_JOB=<runner id>/<job id>/<attempt>` in its environment
(torchrun's ranks inherit it). A worker that takes over an orphaned job finds the old attempt's
processes by that mark in `/proc` and kills them before it resumes the run, so two attempts of one
job never run at the same time, even if a torchrun rank outlived its launcher.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from collections.abc import Callable

JOB_ENV = "ATZOO_SERVICE_JOB"
PR_SET_PDEATHSIG = 1
PROC = Path("/proc")


def job_mark(runner_identity: str, job_id: int, attempt: int) -> str:
    return f"{runner_identity}/{job_id}/{attempt}"


def child_setup(memory_limit_gb: float | None) -> Callable[[], None]:
    """What the child runs between fork and exec: die with the worker (PR_SET_PDEATHSIG), and cap its
    address space (RLIMIT_AS) when a memory limit is set. The worker is single-threaded, so a
    `preexec_fn` is safe here."""
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()
    limit = int(memory_limit_gb * 1024**3) if memory_limit_gb else None

    def setup() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return setup


def supervised(argv: list[str], python: str = sys.executable) -> list[str]:
    """`argv` run under `atzoo.service.supervisor`, which kills every process of the job when the command
    ends, when it is stopped, and when the worker dies."""
    return [python, "-m", "atzoo.service.supervisor", str(os.getpid()), "--", *argv]


def spawn(argv: list[str], *, log: Path, env: dict[str, str], cwd: Path | None,
          memory_limit_gb: float | None, supervise: bool = True) -> subprocess.Popen:
    """Start `argv` (under the supervisor, unless `supervise` is False) in a new session, its own process
    group, its output appended to `log`."""
    command = supervised(argv) if supervise else argv
    with open(log, "ab") as handle:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT, env=env,
                                cwd=cwd, start_new_session=True, preexec_fn=child_setup(memory_limit_gb))


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def stop_group(process: subprocess.Popen, grace_s: float) -> int:
    """SIGTERM the process group, SIGKILL it after `grace_s`; return the leader's exit status."""
    _signal_group(process.pid, signal.SIGTERM)
    try:
        returncode = process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        _signal_group(process.pid, signal.SIGKILL)
        returncode = process.wait()
    _signal_group(process.pid, signal.SIGKILL)
    return returncode


def kill_group(process: subprocess.Popen) -> int:
    _signal_group(process.pid, signal.SIGKILL)
    return process.wait()


def _environment_of(pid: int) -> bytes:
    try:
        return (PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return b""


def find_job_processes(runner_identity: str, job_id: int) -> dict[int, int]:
    """pid -> attempt of every live process that carries this job's mark (zombies carry none)."""
    prefix = f"{JOB_ENV}={runner_identity}/{job_id}/".encode()
    found: dict[int, int] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        for variable in _environment_of(int(entry.name)).split(b"\0"):
            if variable.startswith(prefix):
                attempt = variable[len(prefix):]
                found[int(entry.name)] = int(attempt) if attempt.isdigit() else -1
                break
    return found


def kill_job_processes(runner_identity: str, job_id: int, *, timeout_s: float = 30.0,
                       attempt: int | None = None) -> list[int]:
    """SIGKILL every process of the job (of one `attempt` only, when given) and wait until none is left;
    return the pids killed."""
    killed: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while True:
        alive = {pid: number for pid, number in find_job_processes(runner_identity, job_id).items()
                 if attempt is None or number == attempt}
        if not alive:
            return sorted(killed)
        if time.monotonic() > deadline:
            raise TimeoutError(f"processes {sorted(alive)} of job {job_id} survived SIGKILL for {timeout_s} s")
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.05)
