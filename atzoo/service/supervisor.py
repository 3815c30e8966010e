"""The first process of every job step: it runs the step's command and makes sure that no process of
the job outlives it.

A job's processes include more than the command the worker starts: data loader workers, torchrun's
ranks, a plugin's own subprocesses (which may even start a session of their own). The supervisor

- leads the step's session and process group (the worker starts it with `start_new_session`);
- is a child subreaper, so a process whose parent exits is re-parented to it rather than to init;
- on its worker's death (the kernel's parent-death signal) kills every process of the job;
- when the command ends, however it ends, kills what is left of the job: the process group, its own
  descendants, and every process carrying the job's mark (`ATZOO_SERVICE_JOB`), then exits with the
  command's status (a command killed by a signal makes the supervisor die by the same signal).

SIGTERM (the worker's cancel or time limit, sent to the whole group) reaches the command directly;
the supervisor ignores it and waits for the command to end.

    python -m atzoo.service.supervisor WORKER_PID -- COMMAND...
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

from atzoo.service.processes import JOB_ENV, PROC, find_job_processes

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
WORKER_DEATH_SIGNAL = signal.SIGUSR1


def _parent_of(pid: int) -> int | None:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def descendants(root: int) -> set[int]:
    """Every live process below `root` in the process tree."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            parent = _parent_of(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def _job_processes() -> set[int]:
    mark = os.environ.get(JOB_ENV, "")
    runner, _, rest = mark.partition("/")
    job = rest.partition("/")[0]
    if not runner or not job.isdigit():
        return set()
    return set(find_job_processes(runner, int(job)))


def kill_the_rest() -> None:
    """SIGKILL every other process of the job (descendants, which include the process group, and every
    process carrying the job's mark), then reap the zombies."""
    me = os.getpid()
    for _ in range(50):
        others = (descendants(me) | _job_processes()) - {me}
        if not others:
            break
        for pid in others:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        _reap()
    _reap()


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _exit_like(returncode: int) -> None:
    if returncode < 0:
        signal.signal(-returncode, signal.SIG_DFL)
        os.kill(os.getpid(), -returncode)
    sys.exit(returncode)


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--" or not argv[0].isdigit():
        sys.exit("usage: python -m atzoo.service.supervisor WORKER_PID -- COMMAND...")
    worker, command = int(argv[0]), argv[2:]
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1)
    libc.prctl(PR_SET_PDEATHSIG, WORKER_DEATH_SIGNAL)

    def worker_died(signum: int, frame: object) -> None:
        kill_the_rest()
        os._exit(128 + signal.SIGKILL)

    signal.signal(WORKER_DEATH_SIGNAL, worker_died)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.getppid() != worker:
        worker_died(WORKER_DEATH_SIGNAL, None)
    child = subprocess.Popen(command, preexec_fn=_restore_signals)
    returncode = child.wait()
    kill_the_rest()
    _exit_like(returncode)


def _restore_signals() -> None:
    """The command gets default signal handling (the supervisor's ignores are not inherited) and no
    parent-death signal of its own (the supervisor handles its worker's death)."""
    for signum in (signal.SIGTERM, signal.SIGINT, WORKER_DEATH_SIGNAL):
        signal.signal(signum, signal.SIG_DFL)


if __name__ == "__main__":
    main(sys.argv[1:])
