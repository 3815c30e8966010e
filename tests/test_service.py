"""The runner service: the SQLite queue's rules, job command lines, and workers running tiny jobs on CPU,
including plugins that crash, hang or run out of memory, a killed worker, cancel and shutdown."""

import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from atzoo.service import (ServiceError, Worker, WorkerOptions, cancel_job, job_row, open_queue, open_runner_dir,
                           queue_rows, retry_job)
from atzoo.service.jobs import atzoo_command, job_steps, prepare_run_dir, train_spec, verify_spec
from atzoo.service.processes import JOB_ENV, find_job_processes, job_mark
from atzoo.service.queue import Queue
from atzoo.service.worker import error_line

TINY = ["iters_per_epoch=2", "image_size=[32,16]", "num_workers=0", "num_persons=4", "num_instances=4",
        "eval_batch_size=64", "cache=false"]
FAST = dict(heartbeat_s=0.2, stale_after_s=1.5, poll_s=0.1, grace_s=2.0, handle_signals=False)
WORKER_FLAGS = ["--heartbeat", "0.2", "--stale-after", "1.5", "--poll", "0.1", "--grace", "2"]

PLUGIN_SOURCE = '''
import os, resource, signal, time
from atzoo.plugin import Loss, LossTerm, Method, hookimpl


def crash_loss(context, how="raise"):
    import torch

    class Crash(torch.nn.Module):
        def forward(self, logits, target):
            if how == "segv":
                os.kill(os.getpid(), signal.SIGSEGV)
            if how == "hang":
                time.sleep(600)
            if how == "memory":
                limit = resource.getrlimit(resource.RLIMIT_AS)[0]
                if limit == resource.RLIM_INFINITY:
                    raise RuntimeError("no memory limit is set; refusing to allocate")
                bytearray(limit)
            raise RuntimeError("the crash plugin's loss exploded")

    return Crash()


@hookimpl
def atzoo_register_losses(register):
    register(Loss(name="svc_crash", factory=crash_loss, consumes=("logits", "target")))


@hookimpl
def atzoo_register_methods(register):
    for how in ("raise", "segv", "hang", "memory"):
        register(Method(name=f"svc-{how}", backbone="tiny_cnn", losses=(LossTerm("svc_crash", args={"how": how}),),
                        train={"epochs": 1}))
'''


@pytest.fixture(scope="module")
def crash_plugin(tmp_path_factory) -> Path:
    """A plugin installed the way pip would (a dist-info with an entry point), on a PYTHONPATH folder."""
    root = tmp_path_factory.mktemp("crash-plugin")
    (root / "svc_crash_plugin.py").write_text(PLUGIN_SOURCE)
    dist = root / "svc_crash_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: svc-crash-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[atzoo]\nsvccrash = svc_crash_plugin\n")
    return root


@pytest.fixture
def plugin_env(crash_plugin, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(crash_plugin), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture
def runner(tmp_path):
    return open_runner_dir(tmp_path / "runner", create=True)


def enqueue_train(runner, data_root, method="builtins:baseline", settings=(), **limits) -> int:
    with open_queue(runner) as queue:
        return queue.submit("train", method, train_spec(method, Path(data_root), [*TINY, *settings], entry=False),
                            **limits)


def job(runner, job_id):
    with open_queue(runner) as queue:
        return queue.get(job_id)


def wait_for(condition, timeout=300.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def worker_process(runner, *flags) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "atzoo", "runner", "--runner-dir", str(runner.path), "work",
                             *WORKER_FLAGS, *flags], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


# -- the queue ---------------------------------------------------------------------------------


def test_claims_go_oldest_first_and_a_lost_worker_is_fenced_off(runner):
    with open_queue(runner) as queue:
        first, second = (queue.submit("verify", f"e{i}.json", {"entry": "x", "data_root": "y"}) for i in range(2))
        claim_a = queue.claim("A", stale_after_s=60)
        claim_b = queue.claim("B", stale_after_s=60)
        assert (claim_a.job.id, claim_b.job.id) == (first, second)
        assert queue.claim("C", stale_after_s=60) is None
        time.sleep(0.05)
        takeover = queue.claim("C", stale_after_s=0.01)
        assert takeover.job.id == first and takeover.previous_worker == "A" and takeover.job.attempts == 2
        assert queue.heartbeat(claim_a.job) == (False, False)
        assert not queue.finish(claim_a.job, "done")
        assert queue.finish(takeover.job, "done", result={"ok": 1})
        finished = queue.get(first)
        assert (finished.state, finished.worker, finished.result) == ("done", "C", {"ok": 1})


def test_an_orphan_that_keeps_losing_its_worker_is_failed(runner):
    with open_queue(runner) as queue:
        job_id = queue.submit("verify", "e.json", {"entry": "x", "data_root": "y"})
        for worker in "ABC":
            assert queue.claim(worker, stale_after_s=0.0, max_attempts=3).job.id == job_id
            time.sleep(0.01)
        assert queue.claim("D", stale_after_s=0.0, max_attempts=3) is None
        failed = queue.get(job_id)
        assert failed.state == "failed" and "lost after 3 attempts had started" in failed.reason


def _claim_everything(queue_file: str, worker: str, results) -> None:
    claimed = []
    with Queue.open(queue_file) as queue:
        while (claim := queue.claim(worker, stale_after_s=3600)) is not None:
            claimed.append(claim.job.id)
            queue.finish(claim.job, "done")
    results.put(claimed)


def test_concurrent_workers_never_claim_the_same_job(runner):
    with open_queue(runner) as queue:
        ids = [queue.submit("verify", f"e{i}.json", {"entry": "x", "data_root": "y"}) for i in range(120)]
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    processes = [context.Process(target=_claim_everything, args=(str(runner.queue_file), f"w{i}", results))
                 for i in range(4)]
    for process in processes:
        process.start()
    claimed = [results.get(timeout=300) for _ in processes]
    for process in processes:
        process.join(timeout=300)
    everything = [job_id for part in claimed for job_id in part]
    assert sorted(everything) == ids
    with open_queue(runner) as queue:
        assert queue.counts()["done"] == 120


def test_cancel_and_retry_follow_the_state_rules(runner):
    with open_queue(runner) as queue:
        job_id = queue.submit("verify", "e.json", {"entry": "x", "data_root": "y"})
    assert cancel_job(runner.path, job_id).state == "cancelled"
    with pytest.raises(ServiceError, match="already cancelled"):
        cancel_job(runner.path, job_id)
    assert retry_job(runner.path, job_id).state == "queued"
    with pytest.raises(ServiceError, match="only failed or cancelled"):
        retry_job(runner.path, job_id)
    with pytest.raises(ServiceError, match="no job 99"):
        cancel_job(runner.path, 99)


def test_limits_must_be_positive_and_finite(runner):
    with open_queue(runner) as queue:
        for limits in ({"time_limit_s": float("nan")}, {"time_limit_s": float("inf")},
                       {"memory_limit_gb": float("nan")}, {"memory_limit_gb": 0.0}):
            with pytest.raises(ServiceError, match="must be positive and finite"):
                queue.submit("verify", "e.json", {"entry": "x", "data_root": "y"}, **limits)
        assert queue.jobs() == []


def test_cancel_marks_a_job_of_a_lost_worker_cancelled_and_kills_its_leftovers(runner):
    with open_queue(runner) as queue:
        job_id = queue.submit("verify", "e.json", {"entry": "x", "data_root": "y"})
        claim = queue.claim("lost-worker")
    leftover = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"],
                                env={**os.environ, JOB_ENV: job_mark(runner.identity, job_id, claim.job.attempts)})
    try:
        wait_for(lambda: find_job_processes(runner.identity, job_id), timeout=300, what="the leftover process")
        assert cancel_job(runner.path, job_id).state == "running"  # its heartbeat is fresh: the worker stops it
        assert leftover.poll() is None
        time.sleep(0.3)
        cancelled = cancel_job(runner.path, job_id, stale_after_s=0.2)
        assert (cancelled.state, cancelled.reason) == ("cancelled", "cancelled by request (its worker was gone)")
        assert leftover.wait(timeout=300) == -signal.SIGKILL
    finally:
        leftover.kill()
        leftover.wait()


def test_error_line_picks_what_the_failed_step_said():
    header = "==== job 3 attempt 2 step train worker w at 2026: python -m atzoo train ..."
    end = "==== step train ended with status 2 at 2026"
    earlier = "Error: an earlier attempt's problem"
    assert error_line("\n".join([earlier, header, "epoch 1/3", "Error: no images found under /data/run1",
                                  "", end])) == "Error: no images found under /data/run1"
    traceback = ["Traceback (most recent call last):", '  File "x.py", line 1', "RuntimeError: boom",
                 "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:", "=" * 40, "  exitcode  : 1"]
    assert error_line("\n".join([earlier, header, *traceback, end])) == "RuntimeError: boom"
    assert error_line("\n".join([earlier, header, "segfault-ish noise", "----", end])) == "segfault-ish noise"
    assert error_line("\n".join([earlier, header, end])) is None
    long = error_line("\n".join([header, "Error: " + "x" * 500]))
    assert len(long) == 200 and long.endswith("…")


def test_queue_rows_have_the_shape_the_app_reads(runner):
    with open_queue(runner) as queue:
        queue.submit("verify", "entry.json", {"entry": "x", "data_root": "y"})
        claim = queue.claim("A")
        queue.finish(claim.job, "failed", reason="verify step exited with status 1")
    (row,) = queue_rows(runner.path)
    assert set(row) == {"id", "kind", "target", "state", "attempts", "submitted", "started", "finished",
                        "duration_s", "reason", "backend"}
    assert (row["kind"], row["target"], row["state"], row["attempts"]) == ("verify", "entry.json", "failed", 1)
    assert row["backend"] == "local"
    assert row["submitted"].endswith("+00:00") and row["duration_s"] >= 0
    assert row["reason"] == "verify step exited with status 1"


def test_a_running_job_whose_heartbeat_stopped_says_so(runner):
    with open_queue(runner) as queue:
        queue.submit("verify", "entry.json", {"entry": "x", "data_root": "y"})
        job = queue.claim("A").job
    fresh = job_row(job, now=job.heartbeat + 5)
    assert fresh["state"] == "running" and fresh["reason"] is None
    stalled = job_row(job, now=job.heartbeat + 3600)
    assert stalled["state"] == "running" and stalled["reason"].startswith("no heartbeat for 3600 s")


def test_a_corrupted_queue_file_is_refused_and_left_as_it_was(runner):
    open_queue(runner).close()
    runner.queue_file.write_bytes(b"this is not sqlite" * 100)
    for name in ("queue.sqlite3-wal", "queue.sqlite3-shm"):
        (runner.path / name).unlink(missing_ok=True)
    with pytest.raises(ServiceError, match=r"queue\.sqlite3 is not a readable atzoo queue"):
        queue_rows(runner.path)
    assert runner.queue_file.read_bytes() == b"this is not sqlite" * 100


def test_an_sqlite_file_of_something_else_or_another_version_is_refused(tmp_path, runner):
    other = tmp_path / "other.sqlite3"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE photos (id INTEGER)")
    with pytest.raises(ServiceError, match="not an atzoo queue"):
        Queue.open(other)
    open_queue(runner).close()
    with sqlite3.connect(runner.queue_file) as db:
        db.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(ServiceError, match="schema version 99"):
        queue_rows(runner.path)


def test_a_folder_that_is_not_a_runner_directory_is_refused(tmp_path):
    folder = tmp_path / "papers"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(ServiceError, match="not an atzoo runner directory"):
        open_runner_dir(folder, create=True)
    with pytest.raises(ServiceError, match="not an atzoo runner directory"):
        queue_rows(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    assert queue_rows(tmp_path / "not-yet") == []
    with pytest.raises(ServiceError, match="no runner directory at .*not-yet"):
        queue_rows(tmp_path / "not-yet", missing_ok=False)
    (tmp_path / "empty").mkdir()
    assert queue_rows(tmp_path / "empty") == []


def test_reading_a_runner_directory_creates_nothing(tmp_path):
    from click.testing import CliRunner

    from atzoo.cli.main import cli

    runner_dir = open_runner_dir(tmp_path / "runner", create=True).path
    (runner_dir / "jobs").rmdir()
    result = CliRunner().invoke(cli, ["runner", "--runner-dir", str(runner_dir), "status"])
    assert result.exit_code == 2 and "has no queue file" in result.output
    assert sorted(p.name for p in runner_dir.iterdir()) == ["atzoo-runner.json"]


def test_a_lost_queue_file_beside_existing_jobs_is_not_recreated(runner):
    with open_queue(runner) as queue:
        queue.submit("verify", "e.json", {"entry": "x", "data_root": "y"})
    assert runner.job_dir(1).is_dir()
    runner.queue_file.unlink()
    with pytest.raises(ServiceError, match="missing although"):
        open_queue(runner)
    with pytest.raises(ServiceError, match="missing although"):
        queue_rows(runner.path)
    assert not runner.queue_file.exists()


# -- command lines -----------------------------------------------------------------------------


def test_job_command_lines(runner, tmp_path):
    with open_queue(runner) as queue:
        train_id = queue.submit("train", "builtins:baseline",
                                train_spec("builtins:baseline", tmp_path / "data", ["epochs=2"], entry=True,
                                           entry_args=["--submitter=me"]), gpus=2)
        verify_id = queue.submit("verify", "e.json", verify_spec(tmp_path / "e.json", tmp_path / "data"))
        train_job, verify_job = queue.get(train_id), queue.get(verify_id)
    run = runner.job_run(train_id)
    train, entry = job_steps(train_job, runner, python="py")
    assert train.argv == ["py", "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "atzoo",
                          "--strict", "train", "builtins:baseline", "--data", str(tmp_path / "data"), "--out", str(run),
                          "--set", "epochs=2"]
    assert entry.argv == ["py", "-m", "atzoo", "submit", str(run), "--submitter=me"]
    (verify,) = job_steps(verify_job, runner, python="py")
    assert verify.argv == ["py", "-m", "atzoo", "--strict", "leaderboard", "verify", str(tmp_path / "e.json"),
                           "--data", str(tmp_path / "data")]
    assert atzoo_command("list", python="py") == ["py", "-m", "atzoo", "list"]


def test_a_run_directory_resumes_only_once_it_has_a_config(tmp_path):
    run = tmp_path / "run"
    assert prepare_run_dir(run) is False
    run.mkdir()
    (run / "half-written.tmp").write_text("")
    assert prepare_run_dir(run) is False and not run.exists()
    run.mkdir()
    (run / "config.json").write_text("{}")
    assert prepare_run_dir(run) is True and (run / "config.json").exists()


# -- workers -----------------------------------------------------------------------------------


def test_crashing_plugins_fail_their_jobs_and_the_worker_goes_on(runner, tiny_synth_root, plugin_env, tmp_path):
    (tmp_path / "run1").mkdir()
    no_data = enqueue_train(runner, tmp_path / "run1")
    segv = enqueue_train(runner, tiny_synth_root, "svc-segv")
    raises = enqueue_train(runner, tiny_synth_root, "svc-raise")
    hangs = enqueue_train(runner, tiny_synth_root, "svc-hang", time_limit_s=4.0)
    memory = enqueue_train(runner, tiny_synth_root, "svc-memory", memory_limit_gb=8.0)
    fine = enqueue_train(runner, tiny_synth_root, "builtins:baseline", ["epochs=1"])

    summary = Worker(runner, WorkerOptions(until_empty=True, **FAST), say=lambda message: None).run()
    assert summary.finished == {"failed": 5, "done": 1}

    assert job(runner, segv).reason == "train step killed by signal SIGSEGV"
    crashed = job(runner, raises)
    assert crashed.reason == "train step exited with status 1: RuntimeError: the crash plugin's loss exploded"
    assert job(runner, no_data).reason == (f"train step exited with status 2: Error: no images found under "
                                           f"{tmp_path / 'run1'} (expected pNNN-dNN-cNN/camNN-fF-NNNN.jpg (or .png))")
    assert "RuntimeError: the crash plugin's loss exploded" in crashed.log_tail
    assert job(runner, hangs).reason == "time limit of 4 s exceeded; stopped"
    assert "ran out of memory (limit 8 GB" in job(runner, memory).reason
    assert "MemoryError" in job(runner, memory).log_tail
    done = job(runner, fine)
    assert done.state == "done" and done.result == {"run": str(runner.job_run(fine))}
    assert {p.name for p in runner.job_run(fine).iterdir()} >= {"config.json", "model.safetensors", "metrics.json"}
    assert not any(find_job_processes(runner.identity, job_id) for job_id in (segv, raises, hangs, memory, fine))


def test_a_killed_workers_job_is_taken_over_and_resumed_from_its_checkpoint(runner, tiny_synth_root):
    job_id = enqueue_train(runner, tiny_synth_root, settings=["epochs=4"])
    first = worker_process(runner)
    checkpoint = runner.job_run(job_id) / "checkpoint.safetensors"
    wait_for(checkpoint.exists, what="the first checkpoint")
    first.send_signal(signal.SIGKILL)
    first.wait()
    wait_for(lambda: not find_job_processes(runner.identity, job_id), timeout=300,
             what="the job's process to die with its worker")
    assert job(runner, job_id).state == "running"

    summary = Worker(runner, WorkerOptions(until_empty=True, **FAST), say=lambda message: None).run()
    assert summary.finished == {"done": 1}
    resumed = job(runner, job_id)
    assert (resumed.state, resumed.attempts) == ("done", 2)
    assert "--resume" in runner.job_log(job_id).read_text().split("attempt 2", 1)[1]
    events = [json.loads(line) for line in runner.job_events(job_id).read_text().splitlines()]
    assert [e["event"] for e in events if e["attempt"] == 2][:2] == ["reclaim", "start"]
    log = (runner.job_run(job_id) / "train_log.jsonl").read_text().splitlines()
    epochs = [json.loads(line)["epoch"] for line in log]
    assert epochs == [1, 2, 3, 4]


def test_cancel_stops_a_running_job_and_the_worker_goes_on(runner, tiny_synth_root, plugin_env):
    job_id = enqueue_train(runner, tiny_synth_root, "svc-hang")
    worker = worker_process(runner, "--max-jobs", "1")
    wait_for(lambda: job(runner, job_id).pid, what="the job to start")
    wait_for(lambda: runner.job_run(job_id).joinpath("config.json").exists(), what="training to start")
    assert cancel_job(runner.path, job_id).state == "running"
    wait_for(lambda: job(runner, job_id).state == "cancelled", timeout=300, what="the cancel")
    assert job(runner, job_id).reason == "cancelled by request"
    assert worker.wait(timeout=300) == 0
    assert not find_job_processes(runner.identity, job_id)
    assert [row["state"] for row in queue_rows(runner.path)] == ["cancelled"]


def test_a_stopped_worker_hands_its_job_back(runner, tiny_synth_root, plugin_env):
    job_id = enqueue_train(runner, tiny_synth_root, "svc-hang")
    worker = worker_process(runner)
    wait_for(lambda: job(runner, job_id).pid, what="the job to start")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=300) == 0
    handed_back = job(runner, job_id)
    assert handed_back.state == "queued" and "stopped; the job resumes" in handed_back.reason
    assert not find_job_processes(runner.identity, job_id)
