"""The Slurm backend against a real Slurm cluster (no mock of sbatch, squeue or sacct): a job submitted and
finished, a two-task DDP run on CPUs (gloo) equal to torchrun's, a requeue in mid-training that resumes
bit-exact and finishes once, the signal before a time limit, cancel, and a controller that is down at
submission and back later."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from atzoo.service import get_job, queue_rows
from atzoo.service.control import job_record, submit_slurm_train, sync_slurm
from atzoo.service.processes import find_job_processes
from atzoo.service.runnerdir import open_runner_dir
from atzoo.service.slurm_options import SlurmOptions
from tests.slurm.helpers import (TINY, atzoo, cluster, measured, same_tensors, set_flags, slurm_state, train_log_epochs, wait_for,
                                 wait_state)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("slurm_cluster", "job_env")]

ONE_CPU = SlurmOptions(cpus_per_task=1, time="20")
RUN_FILES = {"checkpoint.safetensors", "config.json", "dataset.json", "environment.json", "metrics.json",
             "model.safetensors", "train_log.jsonl"}


def test_submit_and_finish(tmp_path, tiny_synth_root):
    runner_dir = tmp_path / "runner"
    submitted = atzoo("runner", "--runner-dir", str(runner_dir), "submit", "train", "baseline", "--data",
                      str(tiny_synth_root), "--backend", "slurm", "--cpus-per-task", "1", "--time", "0:20:00",
                      *set_flags([*TINY, "epochs=2"]))
    assert submitted.returncode == 0, submitted.stderr
    assert "job 1 submitted to Slurm as job" in submitted.stdout
    job = wait_state(runner_dir, 1, "done", "failed", "cancelled")
    assert job.state == "done", job.reason
    run = runner_dir / "jobs" / "1" / "run"
    assert RUN_FILES <= {path.name for path in run.iterdir()}
    assert train_log_epochs(run) == [1, 2]
    assert job.result == {"run": str(run)}

    status = atzoo("runner", "--runner-dir", str(runner_dir), "status", "--json")
    row = json.loads(status.stdout)[0]
    assert (row["backend"], row["state"], row["scheduler_state"], row["attempts"]) == ("slurm", "done", "COMPLETED", 1)
    assert row["slurm_job"] and row["node"] and row["duration_s"] is not None
    table = atzoo("runner", "--runner-dir", str(runner_dir), "status")
    assert "slurm" in table.stdout and row["slurm_job"] in table.stdout and "COMPLETED" in table.stdout

    logs = atzoo("runner", "--runner-dir", str(runner_dir), "logs", "1", "--tail", "5")
    assert logs.returncode == 0 and "==== step train ended with status 0" in logs.stdout
    record = json.loads(atzoo("runner", "--runner-dir", str(runner_dir), "show", "1").stdout)
    events = [entry["event"] for entry in record["slurm"]["history"]]
    assert events[:2] == ["queued", "submitted"] and events[-1] == "done" and "scheduler COMPLETED" in events
    assert record["slurm"]["options"] == {"cpus_per_task": 1, "time": "0:20:00"}
    assert "--strict train builtins:baseline" in record["slurm"]["command"][0]
    assert record["run"] == str(run)
    submission = (runner_dir / "jobs" / "1" / "slurm" / f"{row['slurm_job']}_submission.sh").read_text()
    assert "#SBATCH --cpus-per-task=1" in submission and "#SBATCH --time=20" in submission


def test_two_tasks_train_with_gloo_like_torchrun(tmp_path, tiny_synth_root):
    settings = [*TINY, "epochs=1"]
    runner_dir = tmp_path / "runner"
    submission = submit_slurm_train(runner_dir, "baseline", tiny_synth_root, settings,
                                    SlurmOptions(tasks_per_node=2, cpus_per_task=1, time="20"))
    reference = tmp_path / "torchrun"
    torchrun = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "atzoo",
         "--strict", "train", "baseline", "--data", str(tiny_synth_root), "--out", str(reference),
         *set_flags(settings)], capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert torchrun.returncode == 0, torchrun.stderr[-2000:]
    job = wait_state(runner_dir, submission.job_id, "done", "failed", "cancelled")
    assert job.state == "done", job.reason
    run = runner_dir / "jobs" / str(job.id) / "run"
    assert json.loads((run / "environment.json").read_text())["world_size"] == 2
    assert same_tensors(run / "model.safetensors", reference / "model.safetensors")
    assert measured(run) == measured(reference)
    task1 = (runner_dir / "jobs" / str(job.id) / "task1.log").read_text()
    assert "task 1/2" in task1 and "ended with status 0" in task1


def test_requeue_in_mid_training_resumes_bit_exact_and_finishes_once(tmp_path, tiny_synth_root):
    settings = [*TINY, "iters_per_epoch=6", "epochs=10"]
    runner_dir = tmp_path / "runner"
    interrupted = submit_slurm_train(runner_dir, "baseline", tiny_synth_root, settings, ONE_CPU)
    uninterrupted = submit_slurm_train(runner_dir, "baseline", tiny_synth_root, settings, ONE_CPU)
    run = runner_dir / "jobs" / str(interrupted.job_id) / "run"
    wait_for(lambda: len(train_log_epochs(run)) >= 2, "two epochs of training")
    assert not (run / "model.safetensors").exists(), "training ended before the requeue; make the job longer"
    subprocess.run(["scontrol", "requeue", interrupted.slurm_job], check=True, timeout=60)

    first = wait_state(runner_dir, interrupted.job_id, "done", "failed", "cancelled")
    second = wait_state(runner_dir, uninterrupted.job_id, "done", "failed", "cancelled")
    assert (first.state, second.state) == ("done", "done"), (first.reason, second.reason)
    assert (first.attempts, second.attempts) == (2, 1)
    log = (runner_dir / "jobs" / str(interrupted.job_id) / "job.log").read_text()
    headers = [line for line in log.splitlines() if line.startswith("==== job")]
    assert "--resume" not in headers[0] and "--resume" in headers[1], headers
    assert "==== step train ended with status -15" in log
    assert train_log_epochs(run) == list(range(1, 11))
    other = runner_dir / "jobs" / str(uninterrupted.job_id) / "run"
    assert same_tensors(run / "model.safetensors", other / "model.safetensors")
    assert same_tensors(run / "checkpoint.safetensors", other / "checkpoint.safetensors")
    assert measured(run) == measured(other)

    # a finished job that Slurm starts again does nothing: one run, one set of results
    model_before = (run / "model.safetensors").stat().st_mtime_ns
    subprocess.run(["scontrol", "requeue", interrupted.slurm_job], check=True, timeout=60)
    wait_for(lambda: slurm_state(interrupted.slurm_job) == "COMPLETED" and "already complete, skipped" in
             (runner_dir / "jobs" / str(interrupted.job_id) / "job.log").read_text(), "the finished job's rerun")
    assert (run / "model.safetensors").stat().st_mtime_ns == model_before
    assert train_log_epochs(run) == list(range(1, 11))
    sync_slurm(runner_dir)
    assert get_job(runner_dir, interrupted.job_id).state == "done"
    history = job_record(runner_dir, interrupted.job_id)["slurm"]["history"]
    assert [entry["event"] for entry in history].count("done") == 1


def test_the_signal_before_a_time_limit_requeues_through_submitit_and_resumes(tmp_path, tiny_synth_root):
    """Slurm sends SIGUSR2 before the time limit (submitit's --signal); submitit's handler calls the task's
    `checkpoint` and requeues the job, which resumes from the last epoch checkpoint."""
    runner_dir = tmp_path / "runner"
    submission = submit_slurm_train(runner_dir, "baseline", tiny_synth_root, [*TINY, "iters_per_epoch=6", "epochs=10"],
                                    ONE_CPU)
    run = runner_dir / "jobs" / str(submission.job_id) / "run"
    wait_for(lambda: len(train_log_epochs(run)) >= 2, "two epochs of training")
    assert not (run / "model.safetensors").exists(), "training ended before the signal; make the job longer"
    subprocess.run(["scancel", "--signal=USR2", submission.slurm_job], check=True, timeout=60)
    job = wait_state(runner_dir, submission.job_id, "done", "failed", "cancelled")
    assert (job.state, job.attempts) == ("done", 2), job.reason
    log = (runner_dir / "jobs" / str(submission.job_id) / "job.log").read_text()
    assert "Slurm signalled a time limit or preemption" in log
    headers = [line for line in log.splitlines() if line.startswith("==== job") and " step train " in line]
    assert len(headers) == 2 and "--resume" not in headers[0] and "--resume" in headers[1], headers
    assert train_log_epochs(run) == list(range(1, 11))
    events = [json.loads(line) for line in (runner_dir / "jobs" / str(submission.job_id) / "events.jsonl").open()]
    assert [(event["event"], event.get("state")) for event in events] == [
        ("start", None), ("end", "requeued"), ("start", None), ("end", "done")]


def test_cancel_stops_the_job_in_slurm(tmp_path, tiny_synth_root):
    runner_dir = tmp_path / "runner"
    submission = submit_slurm_train(runner_dir, "baseline", tiny_synth_root, [*TINY, "epochs=200"], ONE_CPU)
    run = runner_dir / "jobs" / str(submission.job_id) / "run"
    wait_for(lambda: train_log_epochs(run), "training to start")
    cancelled = atzoo("runner", "--runner-dir", str(runner_dir), "cancel", str(submission.job_id))
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"job {submission.job_id} cancelled" in cancelled.stdout
    job = get_job(runner_dir, submission.job_id)
    assert job.state == "cancelled" and f"scancel {submission.slurm_job}" in job.reason
    wait_for(lambda: slurm_state(submission.slurm_job) == "CANCELLED", "Slurm to cancel the job", 120)
    identity = open_runner_dir(runner_dir).identity
    wait_for(lambda: not find_job_processes(identity, submission.job_id), "the job's processes to end", 120)
    again = atzoo("runner", "--runner-dir", str(runner_dir), "cancel", str(submission.job_id))
    assert again.returncode == 2 and "already cancelled" in again.stderr
    sync_slurm(runner_dir)
    assert get_job(runner_dir, submission.job_id).state == "cancelled"

    retried = atzoo("runner", "--runner-dir", str(runner_dir), "retry", str(submission.job_id))
    assert retried.returncode == 0, retried.stderr
    job = get_job(runner_dir, submission.job_id)
    assert job.state in ("queued", "running")
    record = job_record(runner_dir, submission.job_id)["slurm"]
    assert record["slurm_job"] not in (None, submission.slurm_job)
    atzoo("runner", "--runner-dir", str(runner_dir), "cancel", str(submission.job_id))
    assert get_job(runner_dir, submission.job_id).state == "cancelled"


def test_controller_down_at_submission_and_back(tmp_path, tiny_synth_root):
    runner_dir = tmp_path / "runner"
    cluster("stop-daemon", "slurmctld")
    try:
        submitted = atzoo("runner", "--runner-dir", str(runner_dir), "submit", "train", "baseline", "--data",
                          str(tiny_synth_root), "--backend", "slurm", "--cpus-per-task", "1", "--time", "20",
                          *set_flags([*TINY, "epochs=1"]))
        assert submitted.returncode == 0, submitted.stderr
        assert "job 1 queued (not in Slurm yet)" in submitted.stdout
        assert "controller is unreachable" in submitted.stderr
        status = atzoo("runner", "--runner-dir", str(runner_dir), "status", "--json")
        assert status.returncode == 0
        assert "stays queued" in status.stderr
        row = json.loads(status.stdout)[0]
        assert (row["state"], row["slurm_job"]) == ("queued", None)
        assert "not submitted yet" in row["reason"]
    finally:
        cluster("start")
    status = atzoo("runner", "--runner-dir", str(runner_dir), "status", "--json")
    assert "job 1 submitted to Slurm as job" in status.stderr
    job = wait_state(runner_dir, 1, "done", "failed", "cancelled")
    assert job.state == "done", job.reason
    events = [entry["event"] for entry in job_record(runner_dir, 1)["slurm"]["history"]]
    assert events.count("submitted") == 1 and "submission deferred" in events


def test_a_job_slurm_forgot_is_marked_vanished_and_can_be_retried(tmp_path, tiny_synth_root):
    """As after a controller that lost its state: the recorded Slurm job id is unknown to squeue and sacct."""
    import sqlite3

    runner_dir = tmp_path / "runner"
    cluster("stop-daemon", "slurmctld")
    try:
        submission = submit_slurm_train(runner_dir, "baseline", tiny_synth_root, [*TINY, "epochs=1"], ONE_CPU)
    finally:
        cluster("start")
    with sqlite3.connect(runner_dir / "queue.sqlite3") as db:
        db.execute("UPDATE slurm_jobs SET slurm_id = '987654321' WHERE job_id = ?", (submission.job_id,))
        db.execute("INSERT INTO slurm_history (job_id, time, slurm_id, event) VALUES (?, 0, '987654321', 'submitted')",
                   (submission.job_id,))
    sync_slurm(runner_dir)
    row = queue_rows(runner_dir)[0]
    assert row["state"] == "failed" and row["reason"].startswith("vanished: Slurm no longer knows its Slurm job 987654321")
    retried = atzoo("runner", "--runner-dir", str(runner_dir), "retry", str(submission.job_id))
    assert retried.returncode == 0, retried.stderr
    job = wait_state(runner_dir, submission.job_id, "done", "failed", "cancelled")
    assert job.state == "done", job.reason
    assert Path(job.result["run"]).is_dir()
