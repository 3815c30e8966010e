"""`atzoo runner ...`: bad input is refused with one clear line (exit 2) and leaves the queue as it was;
submit, status, logs, cancel, retry and a worker end to end."""

import json
import shutil
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from atzoo.cli.main import cli
from atzoo.service import open_queue, open_runner_dir, queue_rows

PAPER_ENTRY = Path(__file__).resolve().parents[1] / "leaderboard" / "entries" / "paper-bot.json"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
ENTRY_ARGS = [f"--entry-arg=--weights-repo=org/tiny@{COMMIT}", "--entry-arg=--submitter=me",
              "--entry-arg=--pretraining=none"]

TINY = ["--set", "epochs=1", "--set", "iters_per_epoch=2", "--set", "image_size=[32,16]", "--set", "num_workers=0",
        "--set", "num_persons=4", "--set", "num_instances=4", "--set", "eval_batch_size=64", "--set", "cache=false"]


def invoke(runner_dir, *args: str):
    return CliRunner().invoke(cli, ["runner", "--runner-dir", str(runner_dir), *args])


@pytest.fixture
def queued(tmp_path, tiny_synth_root):
    """A runner directory with one queued train job."""
    runner_dir = tmp_path / "runner"
    result = invoke(runner_dir, "submit", "train", "baseline", "--data", str(tiny_synth_root), *TINY)
    assert result.exit_code == 0, result.output
    assert "job 1 queued" in result.output
    return runner_dir


@pytest.mark.parametrize("args, message", [
    (["submit", "train", "basline", "--data", "{data}"], "unknown method 'basline'; did you mean 'baseline'"),
    (["submit", "train", "baseline", "--data", "{data}", "--set", "epochs"], "--set expects key=value, got 'epochs'"),
    (["submit", "train", "baseline", "--data", "{data}", "--set", "learning_rate=1"], "unknown training setting"),
    (["submit", "train", "baseline", "--data", "{data}", "--set", "epochs=zero"], "epochs"),
    (["submit", "train", "baseline", "--data", "{tmp}/nowhere"], "dataset root .*nowhere does not exist"),
    (["submit", "verify", "{tmp}/missing.json", "--data", "{data}"], "entry .*missing.json does not exist"),
    (["submit", "verify", "{tmp}/garbled.json", "--data", "{data}"], "garbled.json is not readable JSON"),
    (["submit", "train", "baseline", "--data", "{data}", "--entry-arg=--submitter=me"], "given without --entry"),
    (["submit", "train", "baseline", "--data", "{data}", "--time-limit", "nan"], "'nan' is not a finite number"),
    (["submit", "train", "baseline", "--data", "{data}", "--time-limit", "inf"], "'inf' is not a finite number"),
    (["submit", "verify", "{paper}", "--data", "{data}", "--memory-limit", "NaN"], "'NaN' is not a finite number"),
    (["submit", "train", "baseline", "--data", "{data}", "--entry", *ENTRY_ARGS, "--entry-arg=--bogus"],
     r"entry arguments .* not valid for `atzoo submit`: No such option '--bogus'"),
    (["submit", "train", "baseline", "--data", "{data}", "--entry", "--entry-arg=--submitter=me"],
     "Missing option '--pretraining'"),
    (["submit", "train", "baseline", "--data", "{data}", "--entry", "--entry-arg=--submitter=me",
      "--entry-arg=--pretraining=none"], "give exactly one of --weights-repo ORG/NAME@COMMIT .* or --push"),
    (["submit", "train", "baseline", "--data", "{data}", "--entry", *ENTRY_ARGS, "--entry-arg=--help"],
     "No such option '--help'"),
    (["submit", "train", "baseline", "--data", "{tmp}/run1"], r"run1 holds no person folder \(pNNN-dNN-cNN\)"),
    (["submit", "verify", "{paper}", "--data", "{data}"], "paper-bot.json names no weights .origin 'paper'"),
    (["submit", "verify", "{tmp}/stub.json", "--data", "{data}"],
     r"stub.json cannot be verified: .*not a valid leaderboard entry: .*Field required; .* more"),
])
def test_bad_submissions_are_refused_and_queue_nothing(queued, tmp_path, tiny_synth_root, args, message):
    (tmp_path / "garbled.json").write_text("{nope")
    (tmp_path / "stub.json").write_text('{"id": "stub"}')
    (tmp_path / "run1").mkdir()
    (tmp_path / "run1" / "metrics.json").write_text("{}")
    args = [a.format(data=tiny_synth_root, tmp=tmp_path, paper=PAPER_ENTRY) for a in args]
    result = invoke(queued, *args)
    assert result.exit_code == 2, result.output
    assert re.search(message, result.output), result.output
    assert "Traceback" not in result.output and "Usage: atzoo submit" not in result.output
    assert "\n" not in result.output.split("Error: ", 1)[1].strip(), "the error is one line"
    assert [row["id"] for row in queue_rows(queued)] == [1]


def test_a_folder_that_is_not_a_runner_directory_is_refused(tmp_path, tiny_synth_root):
    (tmp_path / "thesis.tex").write_text("mine")
    for args in (["status"], ["work", "--until-empty"],
                 ["submit", "train", "baseline", "--data", str(tiny_synth_root), *TINY]):
        result = invoke(tmp_path, *args)
        assert result.exit_code == 2 and "is not an atzoo runner directory" in result.output, result.output
    assert [p.name for p in tmp_path.iterdir()] == ["thesis.tex"]


def test_a_corrupted_queue_is_a_clear_error(queued):
    (queued / "queue.sqlite3").write_bytes(b"\0garbage" * 512)
    for name in ("queue.sqlite3-wal", "queue.sqlite3-shm"):
        (queued / name).unlink(missing_ok=True)
    for args in (["status"], ["cancel", "1"], ["logs", "1"]):
        result = invoke(queued, *args)
        assert result.exit_code == 2 and "is not a readable atzoo queue" in result.output, result.output


def test_status_cancel_retry_and_unknown_jobs(queued):
    rows = json.loads(invoke(queued, "status", "--json").output)
    assert [(r["id"], r["kind"], r["target"], r["state"]) for r in rows] == [
        (1, "train", "builtins:baseline", "queued")]
    assert invoke(queued, "cancel", "1").output.strip() == "job 1 cancelled"
    again = invoke(queued, "cancel", "1")
    assert again.exit_code == 2 and "already cancelled" in again.output
    assert queue_rows(queued)[0]["reason"] == "cancelled before it started"
    table = invoke(queued, "status").output
    assert "builtins:baseline" in table and "0 queued, 0 running, 0 done, 0 failed, 1 cancelled" in table
    assert invoke(queued, "retry", "1").exit_code == 0
    assert queue_rows(queued)[0]["state"] == "queued"
    for command in ("cancel", "retry", "logs"):
        result = invoke(queued, command, "7")
        assert result.exit_code == 2 and "no job 7" in result.output


def test_work_rejects_bad_options(queued):
    assert "distinct GPU indices" in invoke(queued, "work", "--gpus", "0,x").output
    result = invoke(queued, "work", "--heartbeat", "9", "--stale-after", "3")
    assert "must be shorter than --stale-after" in result.output


def test_submit_work_status_and_logs_end_to_end(queued):
    worker = subprocess.run([sys.executable, "-m", "atzoo", "runner", "--runner-dir", str(queued), "work",
                             "--until-empty", "--poll", "0.1", "--heartbeat", "0.5"],
                            capture_output=True, text=True, timeout=300)
    assert worker.returncode == 0, worker.stderr
    assert json.loads(worker.stdout)["finished"] == {"done": 1}
    (row,) = json.loads(invoke(queued, "status", "--json").output)
    assert row["state"] == "done" and row["attempts"] == 1 and row["duration_s"] > 0
    log = invoke(queued, "logs", "1", "--tail", "3")
    assert log.exit_code == 0 and "step train ended with status 0" in log.output
    assert (queued / "jobs" / "1" / "run" / "metrics.json").is_file()


@pytest.mark.slow
def test_a_two_device_job_runs_under_torchrun(tmp_path, tiny_synth_root):
    runner_dir = tmp_path / "runner"
    result = invoke(runner_dir, "submit", "train", "baseline", "--data", str(tiny_synth_root), "--gpus", "2", *TINY)
    assert result.exit_code == 0, result.output
    small = subprocess.run([sys.executable, "-m", "atzoo", "runner", "--runner-dir", str(runner_dir), "work",
                            "--until-empty", "--poll", "0.1"], capture_output=True, text=True, timeout=600)
    assert small.returncode == 0 and json.loads(small.stdout)["finished"] == {}
    assert queue_rows(runner_dir)[0]["state"] == "queued"  # a one-device worker leaves it for a bigger one
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    worker = subprocess.run([sys.executable, "-m", "atzoo", "runner", "--runner-dir", str(runner_dir), "work",
                             "--gpus", "0,1", "--until-empty", "--poll", "0.1", "--heartbeat", "0.5"],
                            capture_output=True, text=True, timeout=600, env=env)
    assert worker.returncode == 0, worker.stderr
    assert json.loads(worker.stdout)["finished"] == {"done": 1}
    run = runner_dir / "jobs" / "1" / "run"
    assert json.loads((run / "environment.json").read_text())["world_size"] == 2
    assert "torch.distributed.run" in (runner_dir / "jobs" / "1" / "job.log").read_text()


def test_a_complete_entry_request_and_a_real_dataset_are_queued(queued, tiny_synth_root):
    result = invoke(queued, "submit", "train", "baseline", "--data", str(tiny_synth_root), "--entry", *ENTRY_ARGS,
                    "--entry-arg=--notes=tiny", "--time-limit", "600")
    assert result.exit_code == 0, result.output
    with open_queue(open_runner_dir(queued)) as queue:
        job = queue.get(2)
    assert job.spec["entry_args"] == [f"--weights-repo=org/tiny@{COMMIT}", "--submitter=me", "--pretraining=none",
                                      "--notes=tiny"]
    assert job.time_limit_s == 600


def test_read_only_commands_refuse_a_missing_runner_directory_or_queue(tmp_path, queued):
    for args in (["status"], ["status", "--json"], ["logs", "1"], ["cancel", "1"], ["retry", "1"]):
        result = invoke(tmp_path / "nowhere", *args)
        assert result.exit_code == 2 and "no runner directory at" in result.output, (args, result.output)
    assert not (tmp_path / "nowhere").exists()

    assert (queued / "jobs" / "1" / "job.json").is_file()
    for name in ("queue.sqlite3", "queue.sqlite3-wal", "queue.sqlite3-shm"):
        (queued / name).unlink(missing_ok=True)
    for args in (["status"], ["logs", "1"], ["cancel", "1"], ["retry", "1"]):
        result = invoke(queued, *args)
        assert result.exit_code == 2 and "queue.sqlite3 is missing although" in result.output, (args, result.output)
    shutil.rmtree(queued / "jobs" / "1")
    result = invoke(queued, "status")
    assert result.exit_code == 2 and "has no queue file (queue.sqlite3)" in result.output, result.output
    assert not (queued / "queue.sqlite3").exists()
    assert queue_rows(queued) == []  # the app's view: no queue yet is an empty queue


def test_cancel_of_a_job_whose_worker_is_gone_cancels_it_at_once(queued):
    with open_queue(open_runner_dir(queued)) as queue:
        claim = queue.claim("lost-worker")
    with sqlite3.connect(queued / "queue.sqlite3") as db:
        db.execute("UPDATE jobs SET heartbeat = ? WHERE id = 1", (time.time() - 30,))
    waiting = invoke(queued, "cancel", "1")
    assert waiting.exit_code == 0 and "cancel requested; its worker stops it" in waiting.output
    assert queue_rows(queued)[0]["state"] == "running"
    result = invoke(queued, "cancel", "1", "--stale-after", "10")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "job 1 cancelled: its worker was gone (no heartbeat for over 10 s)"
    (row,) = queue_rows(queued)
    assert (row["state"], row["attempts"]) == ("cancelled", claim.job.attempts)
    assert "'nan' is not a finite number" in invoke(queued, "cancel", "1", "--stale-after", "nan").output


def test_work_refuses_an_empty_gpu_list_and_warns_without_cuda(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(signal, "signal", lambda *args: None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for value in ("", " ", "0,"):
        result = invoke(tmp_path / "runner", "work", "--gpus", value, "--until-empty")
        assert result.exit_code == 2 and "expected distinct GPU indices" in result.output, (value, result.output)
    result = invoke(tmp_path / "runner", "work", "--gpus", "0", "--until-empty", "--poll", "0.1")
    assert result.exit_code == 0, result.output
    assert result.output.count("CUDA is not available here; jobs run on the CPU") == 1
    assert json.loads(result.stdout)["finished"] == {}


def test_work_until_empty_says_why_a_queued_job_was_left(queued, tiny_synth_root, monkeypatch):
    monkeypatch.setattr(signal, "signal", lambda *args: None)
    with open_queue(open_runner_dir(queued)) as queue:
        queue.request_cancel(1)
    for _ in range(2):
        assert invoke(queued, "submit", "train", "baseline", "--data", str(tiny_synth_root), "--gpus", "2",
                      *TINY).exit_code == 0
    result = invoke(queued, "work", "--until-empty", "--poll", "0.1")
    assert result.exit_code == 0, result.output
    assert "stopped: no jobs; 2 queued jobs need more devices than this worker's 1" in result.stderr
    assert [row["state"] for row in queue_rows(queued)] == ["cancelled", "queued", "queued"]
