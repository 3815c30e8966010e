"""Requests to the Slurm backend: options, lab defaults, and bad input. Each refusal is one clear line,
exit status 2, and leaves the runner directory as it was. The first half needs no cluster; the second
asks a real one (`sbatch --test-only`, real submissions)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess

import pytest

from atzoo.errors import ServiceError
from atzoo.service import get_job, open_queue, open_runner_dir, queue_rows
from atzoo.service.control import job_record, submit_slurm_train
from atzoo.service.queue import Queue
from atzoo.service.slurm import executor_parameters, sbatch_flags
from atzoo.service.slurm_options import SlurmOptions, parse_slurm_args, time_seconds
from atzoo.service.jobs import train_spec
from tests.slurm.helpers import TINY, atzoo, set_flags, slurm_state, wait_state

SUBMIT = ["submit", "train", "baseline", "--data", "{data}", "--backend", "slurm"]


def runner_cli(runner_dir, *args, env=None):
    return atzoo("runner", "--runner-dir", str(runner_dir), *args, env=env)


def filled(args, data):
    return [arg.replace("{data}", str(data)) for arg in args]


# -- no cluster needed ---------------------------------------------------------------------------


@pytest.mark.parametrize("text, seconds", [("90", 5400), ("5:30", 330), ("1:02:03", 3723), ("2-0", 172800),
                                           ("1-02:03", 93780), ("1-02:03:04", 93784), (" 10 ", 600)])
def test_slurm_time_formats(text, seconds):
    assert time_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "ten", "1:2:3:4", "-5", "0", "1.5", "1-", "UNLIMITED"])
def test_a_bad_time_is_refused(text):
    with pytest.raises(ServiceError, match="--time"):
        time_seconds(text)


@pytest.mark.parametrize("options, message", [
    (dict(nodes=0), "--nodes must be a whole number of at least 1"),
    (dict(cpus_per_task=True), "--cpus-per-task must be a whole number"),
    (dict(mem="lots"), "--mem 'lots' is not a Slurm memory size"),
    (dict(partition=" "), "--partition must be a non-empty one-line text"),
    (dict(account="a\nb"), "--account must be a non-empty one-line text"),
    (dict(time="soon"), "--time 'soon' is not a Slurm time"),
])
def test_bad_options_are_refused(options, message):
    with pytest.raises(ServiceError, match=message):
        SlurmOptions(**options)


@pytest.mark.parametrize("arg, message", [
    ("output=/tmp/x", "atzoo sets --output itself"), ("job-name=mine", "atzoo sets --job-name itself"),
    ("partition=gpu", "use --partition instead"), ("t=10", "use --time instead"),
    ("ntasks=4", "use --tasks-per-node"), ("bad key=1", "not an sbatch option name"),
])
def test_slurm_args_that_would_break_the_job_are_refused(arg, message):
    with pytest.raises(ServiceError, match=message):
        parse_slurm_args([arg])


def test_options_merge_over_lab_defaults():
    lab = SlurmOptions(partition="gpu", account="lab", time="1-00:00:00", args=(("mail-type", "END"),))
    mine = SlurmOptions(time="2:00:00", args=(("mail-type", "FAIL"), ("exclusive", "")))
    merged = mine.over(lab)
    assert (merged.partition, merged.account, merged.time) == ("gpu", "lab", "2:00:00")
    assert dict(merged.args) == {"mail-type": "FAIL", "exclusive": ""}
    assert SlurmOptions.from_json(merged.to_json(), "here") == merged


def test_preflight_flags_are_the_lines_submitit_writes(tmp_path):
    from submitit.slurm.slurm import _make_sbatch_string

    options = SlurmOptions(partition="gpu", nodes=2, gpus_per_node=4, cpus_per_task=8, mem="64G", time="1-00:00:00",
                           account="lab", qos="high", constraint="a100", args=(("mail-type", "END"), ("exclusive", "")))
    parameters = executor_parameters(options, "atzoo-x-1", "a comment")
    script = _make_sbatch_string(command="true", folder=tmp_path, **parameters)
    lines = {line.removeprefix("#SBATCH ").replace("'", "") for line in script.splitlines() if line.startswith("#SBATCH")}
    flags = set(sbatch_flags(parameters))
    assert flags <= lines
    assert lines - flags == {f"--output={tmp_path}/%j_0_log.out", f"--error={tmp_path}/%j_0_log.err",
                             "--open-mode=append", "--signal=USR2@90", "--wckey=submitit"}
    assert {"--ntasks-per-node=4", "--gpus-per-node=4", "--time=1440", "--mem=64G", "--exclusive"} <= flags


def test_local_workers_never_claim_a_slurm_job(tmp_path, tiny_synth_root):
    runner = open_runner_dir(tmp_path / "runner", create=True)
    with open_queue(runner) as queue:
        slurm_id = queue.submit("train", "builtins:baseline", train_spec("builtins:baseline", tiny_synth_root, [],
                                                                         entry=False), backend="slurm")
        assert queue.claim("worker-1") is None
        assert queue.idle()
        local_id = queue.submit("train", "builtins:baseline", train_spec("builtins:baseline", tiny_synth_root, [],
                                                                         entry=False))
        claim = queue.claim("worker-1")
        assert claim is not None and claim.job.id == local_id and claim.job.backend == "local"
        assert queue.get(slurm_id).state == "queued"


def test_a_version_1_queue_is_migrated_and_its_jobs_stay_local(tmp_path):
    runner = open_runner_dir(tmp_path / "runner", create=True)
    with sqlite3.connect(runner.queue_file) as db:
        db.executescript("""
            CREATE TABLE schema_version (version INTEGER NOT NULL);
            INSERT INTO schema_version VALUES (1);
            CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, target TEXT NOT NULL,
                spec TEXT NOT NULL, gpus INTEGER NOT NULL DEFAULT 1, time_limit_s REAL, memory_limit_gb REAL,
                state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, worker TEXT, pid INTEGER, heartbeat REAL,
                cancel_requested INTEGER NOT NULL DEFAULT 0, submitted REAL NOT NULL, started REAL, finished REAL,
                returncode INTEGER, reason TEXT, log_tail TEXT, result TEXT);
        """)
        spec = json.dumps(train_spec("builtins:baseline", tmp_path / "data", [], entry=False))
        db.execute("INSERT INTO jobs (kind, target, spec, state, submitted) VALUES ('train', 'builtins:baseline', ?, "
                   "'queued', 1)", (spec,))
    with Queue.open(runner.queue_file) as queue:
        assert queue.get(1).backend == "local"
        assert queue.claim("worker-1").job.id == 1
    with sqlite3.connect(runner.queue_file) as db:
        assert db.execute("SELECT version FROM schema_version").fetchone() == (2,)


def test_without_slurm_installed_the_error_says_how_to_install_or_use_the_local_backend(tmp_path, tiny_synth_root):
    empty = tmp_path / "no-slurm-here"
    empty.mkdir()
    env = {**os.environ, "PATH": str(empty)}
    result = runner_cli(tmp_path / "runner", *filled(SUBMIT, tiny_synth_root), env=env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "sbatch" in result.stderr and "not installed here" in result.stderr
    assert "apt-get install slurm-client" in result.stderr and "without `--backend slurm`" in result.stderr
    assert not (tmp_path / "runner").exists()


@pytest.mark.parametrize("extra, message", [
    (["--backend", "local", "--partition", "gpu"], "--partition apply to --backend slurm only"),
    (["--slurm-arg", "mail-type=END"], "--slurm-arg apply to --backend slurm only"),
    (["--backend", "slurm", "--gpus", "2"], "--gpus is the local backend's: with --backend slurm use --gpus-per-node"),
    (["--backend", "slurm", "--time-limit", "60"], "--time-limit is the local backend's: with --backend slurm use --time"),
    (["--backend", "slurm", "--slurm-arg", "output=/tmp/x"], "atzoo sets --output itself"),
    (["--backend", "slurm", "--mem", "plenty"], "--mem 'plenty' is not a Slurm memory size"),
    (["--backend", "slurm", "--time", "1:2:3:4"], "--time '1:2:3:4' is not a Slurm time"),
    (["--backend", "slurm", "--nodes", "0"], "Invalid value for '--nodes'"),
])
def test_options_of_the_wrong_backend_or_malformed_are_refused(tmp_path, tiny_synth_root, extra, message):
    result = runner_cli(tmp_path / "runner", "submit", "train", "baseline", "--data", str(tiny_synth_root), *extra)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runner").exists()


def test_lab_defaults_are_kept_in_the_runner_directory(tmp_path):
    runner_dir = tmp_path / "runner"
    shown = runner_cli(runner_dir, "slurm-defaults", "--partition", "debug", "--account", "atzoo", "--time", "0:30:00",
                       "--slurm-arg", "mail-type=NONE")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == {"partition": "debug", "time": "0:30:00", "account": "atzoo",
                                        "args": {"mail-type": "NONE"}}
    more = runner_cli(runner_dir, "slurm-defaults", "--cpus-per-task", "2")
    assert json.loads(more.stdout)["cpus_per_task"] == 2 and json.loads(more.stdout)["partition"] == "debug"
    assert json.loads(runner_cli(runner_dir, "slurm-defaults").stdout) == json.loads(more.stdout)
    cleared = runner_cli(runner_dir, "slurm-defaults", "--clear", "--time", "10")
    assert json.loads(cleared.stdout) == {"time": "10"}

    settings = runner_dir / "settings.json"
    settings.write_text('{"format": "atzoo-runner-settings-1", "slurm": {"partition": "debug", "gpus": 2}}')
    broken = runner_cli(runner_dir, "slurm-defaults")
    assert broken.returncode == 2 and "settings.json field 'slurm': unknown Slurm option(s) gpus" in broken.stderr
    settings.write_text('{"format": "atzoo-runner-settings-1", "slurm": {"nodes": -1}}')
    broken = runner_cli(runner_dir, "slurm-defaults")
    assert broken.returncode == 2 and "--nodes must be a whole number of at least 1" in broken.stderr
    assert "settings.json" in broken.stderr


# -- a real cluster ------------------------------------------------------------------------------

cluster_needed = pytest.mark.usefixtures("slurm_cluster", "job_env")


@cluster_needed
@pytest.mark.parametrize("extra, message", [
    (["--partition", "nowhere"], "invalid partition specified: nowhere"),
    (["--account", "nobody"], "Invalid account or account/partition combination specified"),
    (["--gpus-per-node", "1"], "partition 'debug' has no GPUs"),
    (["--nodes", "2"], "Slurm refuses the job `train builtins:baseline`"),
])
def test_what_slurm_refuses_is_refused_before_anything_is_queued(tmp_path, tiny_synth_root, extra, message):
    runner_dir = tmp_path / "runner"
    runner_cli(runner_dir, "slurm-defaults", "--time", "10")
    result = runner_cli(runner_dir, *filled(SUBMIT, tiny_synth_root), *extra)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert "train builtins:baseline" in result.stderr
    assert not (runner_dir / "queue.sqlite3").exists() or queue_rows(runner_dir) == []


@cluster_needed
def test_a_time_limit_too_short_for_the_first_checkpoint_is_warned_about(tmp_path, tiny_synth_root):
    runner_dir = tmp_path / "runner"
    short = runner_cli(runner_dir, *filled(SUBMIT, tiny_synth_root), "--time", "2", "--cpus-per-task", "1",
                       *set_flags([*TINY, "epochs=1"]))
    assert short.returncode == 0, short.stderr
    assert "Warning: --time 2 is under 5 minutes" in short.stderr
    assert wait_state(runner_dir, 1, "done", "failed", "cancelled").state == "done"

    slow = runner_cli(runner_dir, *filled(SUBMIT, tiny_synth_root), "--time", "3", "--cpus-per-task", "1",
                      *set_flags([*TINY, "epochs=10000", "checkpoint_every=10000"]))
    assert slow.returncode == 0, slow.stderr
    assert "--time 3 may be too short to reach the first checkpoint: job 1 of builtins:baseline" in slow.stderr
    assert "a checkpoint is written every 10000 epoch(s)" in slow.stderr
    assert runner_cli(runner_dir, "cancel", "2").returncode == 0


@cluster_needed
def test_a_job_id_of_another_runner_directory_or_of_slurm_alone_is_refused(tmp_path, tiny_synth_root):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    options = SlurmOptions(cpus_per_task=1, time="10")
    submit_slurm_train(ours, "baseline", tiny_synth_root, [*TINY, "epochs=1"], options)
    other = submit_slurm_train(theirs, "baseline", tiny_synth_root, [*TINY, "epochs=200"], options)
    foreign = subprocess.run(["sbatch", "--parsable", "--time=5", "--output=/dev/null", "--wrap", "sleep 300"],
                             capture_output=True, text=True, check=True).stdout.strip().split(";")[0]
    try:
        for command in (["cancel"], ["logs"], ["retry"], ["show"]):
            result = runner_cli(ours, *command, other.slurm_job)
            assert result.returncode == 2, result.stdout + result.stderr
            assert f"Slurm job {other.slurm_job} belongs to another atzoo runner directory" in result.stderr
            assert f"its job {other.job_id}" in result.stderr and "nothing was done" in result.stderr
        alone = runner_cli(ours, "cancel", foreign)
        assert alone.returncode == 2 and "not an atzoo job of this runner directory" in alone.stderr
        mine = runner_cli(theirs, "cancel", other.slurm_job)
        assert mine.returncode == 2 and f"is atzoo job {other.job_id} of this runner directory" in mine.stderr
        assert slurm_state(foreign) in ("PENDING", "RUNNING")
        assert slurm_state(other.slurm_job) in ("PENDING", "RUNNING")
        assert get_job(theirs, other.job_id).state in ("queued", "running")
    finally:
        subprocess.run(["scancel", foreign], check=False)
        runner_cli(theirs, "cancel", str(other.job_id))
    assert wait_state(ours, 1, "done", "failed", "cancelled").state == "done"


@cluster_needed
def test_lab_defaults_reach_the_submission(tmp_path, tiny_synth_root):
    runner_dir = tmp_path / "runner"
    runner_cli(runner_dir, "slurm-defaults", "--partition", "debug", "--account", "atzoo", "--cpus-per-task", "1",
               "--time", "0:15:00", "--slurm-arg", "mail-type=NONE")
    submitted = runner_cli(runner_dir, *filled(SUBMIT, tiny_synth_root), "--time", "0:20:00",
                           *set_flags([*TINY, "epochs=1"]))
    assert submitted.returncode == 0, submitted.stderr
    record = job_record(runner_dir, 1)["slurm"]
    assert record["options"] == {"partition": "debug", "cpus_per_task": 1, "time": "0:20:00", "account": "atzoo",
                                 "args": {"mail-type": "NONE"}}
    script = (runner_dir / "jobs" / "1" / "slurm" / f"{record['slurm_job']}_submission.sh").read_text()
    for line in ("--partition=debug", "--account=atzoo", "--cpus-per-task=1", "--time=20", "--mail-type=NONE",
                 "--job-name=atzoo-"):
        assert f"#SBATCH {line}" in script
    assert wait_state(runner_dir, 1, "done", "failed", "cancelled").state == "done"
    account = subprocess.run(["sacct", "-X", "-n", "-P", "-j", record["slurm_job"], "-o", "Account"],
                             capture_output=True, text=True, check=True).stdout.split()
    assert account == ["atzoo"]
