"""`atzoo runner ...`: bad input is refused with one clear line (exit 2) and leaves the queue as it was;
submit, status, logs, cancel, retry and a worker end to end."""

import json
import os
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from atzoo.cli.main import cli
from atzoo.service import queue_rows

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
])
def test_bad_submissions_are_refused_and_queue_nothing(queued, tmp_path, tiny_synth_root, args, message):
    (tmp_path / "garbled.json").write_text("{nope")
    args = [a.format(data=tiny_synth_root, tmp=tmp_path) for a in args]
    result = invoke(queued, *args)
    assert result.exit_code == 2, result.output
    assert re.search(message, result.output), result.output
    assert "Traceback" not in result.output
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
                            "--until-empty", "--poll", "0.1"], capture_output=True, text=True, timeout=60)
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
