"""Process hygiene: no process of a job outlives it. A job's step starts real child processes (PyTorch
data loader workers, a plain child, a child in a session of its own as a plugin's subprocess may start,
an orphaned grandchild); after a cancel, a time limit, the worker's death, or the step's normal end,
every one of them is gone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from atzoo.service.control import cancel_job
from atzoo.service.queue import open_queue
from atzoo.service.runnerdir import open_runner_dir

WAIT_S = 300

JOB_SCRIPT = textwrap.dedent("""
    import json, os, subprocess, sys, time

    pids_file, mode = sys.argv[1], sys.argv[2]
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
    workers = []
    if mode != "light":
        import torch
        from torch.utils.data import DataLoader, TensorDataset

        loader = iter(DataLoader(TensorDataset(torch.arange(64.0)), batch_size=2, num_workers=2))
        next(loader)
        workers = [w.pid for w in loader._workers]
    same_group = subprocess.Popen(sleeper)
    own_session = subprocess.Popen(sleeper, start_new_session=True)
    parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys; p = subprocess.Popen(" + repr(sleeper)
                               + "); print(p.pid, flush=True)"], stdout=subprocess.PIPE, text=True)
    orphan = int(parent.stdout.readline())
    parent.wait()
    pids = workers + [same_group.pid, own_session.pid, orphan, os.getpid()]
    with open(pids_file + ".tmp", "w") as handle:
        json.dump(pids, handle)
    os.replace(pids_file + ".tmp", pids_file)
    if mode == "exit":
        sys.exit(0)
    time.sleep(600)
""")

WORKER_SCRIPT = textwrap.dedent("""
    import sys
    import atzoo.service.worker as worker
    from atzoo.service.jobs import Step
    from atzoo.service.runnerdir import open_runner_dir

    runner, script, pids, mode = sys.argv[1:5]
    worker.job_steps = lambda job, runner, **kwargs: [Step("train", [sys.executable, script, pids, mode])]
    options = worker.WorkerOptions(max_jobs=1, poll_s=0.1, heartbeat_s=0.2, grace_s=2.0, stale_after_s=60.0)
    worker.Worker(open_runner_dir(runner), options).run()
""")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture()
def job(tmp_path):
    runner = open_runner_dir(tmp_path / "runner", create=True)
    (tmp_path / "job.py").write_text(JOB_SCRIPT)
    (tmp_path / "worker.py").write_text(WORKER_SCRIPT)

    def start(mode: str, time_limit_s: float | None = None):
        with open_queue(runner) as queue:
            job_id = queue.submit("train", "test", {"method": "test", "data_root": str(tmp_path)},
                                  time_limit_s=time_limit_s)
        pids = tmp_path / "pids.json"
        worker = subprocess.Popen([sys.executable, str(tmp_path / "worker.py"), str(runner.path),
                                   str(tmp_path / "job.py"), str(pids), mode], start_new_session=True,
                                  stdout=subprocess.DEVNULL, stderr=open(tmp_path / "worker.log", "wb"))
        wait_for(lambda: pids.exists() or worker.poll() is not None, "the job's processes")
        assert pids.exists(), (tmp_path / "worker.log").read_text()
        return runner, job_id, worker, json.loads(pids.read_text())

    yield start


def _state(runner, job_id):
    with open_queue(runner) as queue:
        return queue.get(job_id)


def test_cancel_kills_every_process_of_the_job(job):
    runner, job_id, worker, pids = job("sleep")
    assert all(alive(pid) for pid in pids)
    cancel_job(runner.path, job_id)
    worker.wait(timeout=WAIT_S)
    wait_for(lambda: not any(alive(pid) for pid in pids), "the job's processes to die")
    assert _state(runner, job_id).state == "cancelled"


def test_a_time_limit_kills_every_process_of_the_job(job):
    runner, job_id, worker, pids = job("light", time_limit_s=10.0)
    worker.wait(timeout=WAIT_S)
    wait_for(lambda: not any(alive(pid) for pid in pids), "the job's processes to die")
    assert "time limit" in _state(runner, job_id).reason


def test_the_workers_death_kills_every_process_of_the_job(job):
    runner, job_id, worker, pids = job("sleep")
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=WAIT_S)
    wait_for(lambda: not any(alive(pid) for pid in pids), "the job's processes to die")


def test_a_step_that_ends_leaves_no_process_behind(job):
    runner, job_id, worker, pids = job("exit")
    worker.wait(timeout=WAIT_S)
    wait_for(lambda: not any(alive(pid) for pid in pids), "the job's processes to die")
    assert _state(runner, job_id).state == "done"
