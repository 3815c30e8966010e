"""The runner's queue: a lost, emptied, truncated, damaged or foreign queue file, job folders above every
row, damaged rows. Ids are never reused, a job never adopts a folder it did not create, a damaged row is
reported on its own line while the other jobs keep working, and `atzoo runner recover` rebuilds the queue."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from atzoo.service.runnerdir import open_runner_dir
from tests.badinput.harness import assert_user_error, run_cli, tree, unchanged


@pytest.fixture()
def runner(world, tmp_path, capsys):
    """A runner directory with three queued train jobs (ids 1-3)."""
    path = tmp_path / "runner"
    for _ in range(3):
        result = run_cli(capsys, "runner", "--runner-dir", path, "submit", "train", "baseline", "--data", world.data)
        assert result.code == 0, result.text
    return path


def submit(capsys, runner, world):
    return run_cli(capsys, "runner", "--runner-dir", runner, "submit", "train", "baseline", "--data", world.data)


def _empty(queue):
    queue.write_bytes(b"")


def _truncate(queue):
    data = queue.read_bytes()
    queue.write_bytes(data[: len(data) // 2])


def _garbage(queue):
    queue.write_bytes(b"this is not a database" * 100)


def _foreign(queue, tmp_path=None):
    other = open_runner_dir(queue.parent.parent / f"{queue.parent.name}-other", create=True)
    from atzoo.service.queue import open_queue

    open_queue(other).close()
    shutil.copy(other.queue_file, queue)


def _delete(queue):
    queue.unlink()


DAMAGED_QUEUE_FILES = [("emptied", _empty, "recover"), ("truncated", _truncate, "recover"),
                       ("garbage", _garbage, "recover"), ("foreign", _foreign, "another runner directory"),
                       ("deleted", _delete, "recover")]


@pytest.mark.parametrize("damage, expected", [pytest.param(d, e, id=i) for i, d, e in DAMAGED_QUEUE_FILES])
@pytest.mark.parametrize("command", ["submit", "status", "work"])
def test_a_damaged_queue_file_is_refused_and_nothing_is_renumbered(world, runner, capsys, damage, expected, command):
    for wal in runner.glob("queue.sqlite3-*"):
        wal.unlink()
    damage(runner / "queue.sqlite3")
    argv = {"submit": ["submit", "train", "baseline", "--data", world.data], "status": ["status"],
            "work": ["work", "--until-empty"]}[command]
    with unchanged(runner / "jobs"):
        result = run_cli(capsys, "runner", "--runner-dir", runner, *argv)
    assert_user_error(result, expected)


@pytest.mark.parametrize("damage", [d for _, d, _ in DAMAGED_QUEUE_FILES])
def test_recover_rebuilds_the_queue_with_the_same_ids(world, runner, capsys, damage):
    events = runner / "jobs" / "2" / "events.jsonl"
    events.write_text(json.dumps({"event": "start", "job": 2}) + "\n" + json.dumps({"event": "end", "state": "done"})
                      + "\n")
    (runner / "jobs" / "3" / "events.jsonl").write_text(json.dumps({"event": "start", "job": 3}) + "\n")
    for wal in runner.glob("queue.sqlite3-*"):
        wal.unlink()
    damage(runner / "queue.sqlite3")
    result = run_cli(capsys, "runner", "--runner-dir", runner, "recover")
    assert result.code == 0, result.text
    rows = json.loads(run_cli(capsys, "runner", "--runner-dir", runner, "status", "--json").out)
    assert [(r["id"], r["state"]) for r in rows] == [(1, "queued"), (2, "done"), (3, "failed")]
    assert submit(capsys, runner, world).out.startswith("job 4 queued")


def test_a_job_folder_above_every_row_is_never_reused(world, runner, capsys):
    stray = runner / "jobs" / "7"
    (stray / "run").mkdir(parents=True)
    (stray / "run" / "model.safetensors").write_bytes(b"an old job's weights")
    with unchanged(stray):
        assert submit(capsys, runner, world).out.startswith("job 8 queued")
    status = run_cli(capsys, "runner", "--runner-dir", runner, "status")
    assert "job 7: damaged: job folder jobs/7 has no row" in status.err


def test_a_job_never_writes_into_a_folder_it_did_not_create(world, runner, capsys):
    folder = runner / "jobs" / "1"
    (folder / "job.json").unlink()
    (folder / "notes.txt").write_text("someone else's")
    with unchanged(folder):
        result = run_cli(capsys, "runner", "--runner-dir", runner, "work", "--max-jobs", "1", "--poll", "0.1")
    assert result.code == 0, result.text
    rows = {r["id"]: r for r in json.loads(run_cli(capsys, "runner", "--runner-dir", runner, "status", "--json").out)}
    assert rows[1]["state"] == "failed" and "was not created for this job" in rows[1]["reason"]


DAMAGED_ROWS = [
    ("spec-not-json", "spec = '{not json'", "spec is not valid JSON"),
    ("spec-not-object", "spec = '[1, 2]'", "spec is not a JSON object"),
    ("spec-empty", "spec = ''", "spec is empty"),
    ("result-not-json", "result = 'garbage'", "result is not valid JSON"),
    ("gpus-text", "gpus = 'two'", "gpus"),
    ("submitted-text", "submitted = 'yesterday'", "submitted"),
    ("attempts-real", "attempts = 1.5", "attempts"),
    ("target-blob", "target = x'00ff'", "target"),
]


@pytest.mark.parametrize("assignment, problem", [pytest.param(a, p, id=i) for i, a, p in DAMAGED_ROWS])
def test_a_damaged_row_is_reported_on_its_own_line_and_the_others_work(world, runner, capsys, assignment, problem):
    with sqlite3.connect(runner / "queue.sqlite3") as db:
        db.execute("PRAGMA ignore_check_constraints = 1")
        db.execute(f"UPDATE jobs SET {assignment} WHERE id = 2")
    status = run_cli(capsys, "runner", "--runner-dir", runner, "status")
    assert status.code == 0 and "Traceback" not in status.text, status.text
    assert "job 2: damaged: " in status.err and problem in status.err
    rows = json.loads(run_cli(capsys, "runner", "--runner-dir", runner, "status", "--json").out)
    assert [(r["id"], r["state"]) for r in rows] == [(1, "queued"), (2, "damaged"), (3, "queued")]
    assert_user_error(run_cli(capsys, "runner", "--runner-dir", runner, "cancel", "2"), "job 2", problem)
    assert run_cli(capsys, "runner", "--runner-dir", runner, "cancel", "3").code == 0
    assert run_cli(capsys, "runner", "--runner-dir", runner, "retry", "3").code == 0
    assert run_cli(capsys, "runner", "--runner-dir", runner, "logs", "1").code == 0


def test_a_worker_fails_a_damaged_row_and_goes_on(world, runner, capsys):
    with sqlite3.connect(runner / "queue.sqlite3") as db:
        db.execute("UPDATE jobs SET spec = '{not json' WHERE id = 1")
        db.execute("UPDATE jobs SET state = 'cancelled' WHERE id IN (2, 3)")
    result = run_cli(capsys, "runner", "--runner-dir", runner, "work", "--until-empty", "--poll", "0.1")
    assert result.code == 0, result.text
    with sqlite3.connect(runner / "queue.sqlite3") as db:
        state, reason = db.execute("SELECT state, reason FROM jobs WHERE id = 1").fetchone()
    assert state == "failed" and "damaged" in reason
    assert tree(runner / "jobs" / "1") == {"job.json": tree(runner / "jobs" / "1")["job.json"]}


def test_the_queue_is_in_wal_mode_with_full_sync(runner):
    from atzoo.service.queue import open_queue

    with open_queue(open_runner_dir(runner)) as queue:
        assert queue._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert queue._db.execute("PRAGMA synchronous").fetchone()[0] == 2
