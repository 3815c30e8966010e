"""The runner service and the leaderboard together: a train job that also writes its leaderboard entry,
a verify job that writes the entry's verified block, and the app's queue view reading the same queue."""

import json
import subprocess
import sys


from atzoo.app.app import LeaderboardApp
from atzoo.leaderboard.store import load_snapshot, read_entry
from atzoo.leaderboard.submit import submit
from atzoo.service import open_queue, open_runner_dir, queue_rows, submit_train, submit_verify
from atzoo.service.jobs import job_steps
from tests.packages import make_measured_package, populate_hf_cache

TINY = ["epochs=1", "iters_per_epoch=2", "image_size=[32,16]", "num_workers=0", "num_persons=4", "num_instances=4",
        "eval_batch_size=64", "cache=false"]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def work_until_empty(runner_dir) -> dict:
    worker = subprocess.run([sys.executable, "-m", "atzoo", "runner", "--runner-dir", str(runner_dir), "work",
                             "--until-empty", "--poll", "0.1", "--heartbeat", "0.5"],
                            capture_output=True, text=True, timeout=300)
    assert worker.returncode == 0, worker.stderr
    return json.loads(worker.stdout)


def test_a_train_job_writes_its_leaderboard_entry_once(tmp_path, registry, tiny_synth_root):
    runner = open_runner_dir(tmp_path / "runner", create=True)
    job_id = submit_train(runner.path, "builtins:baseline", tiny_synth_root, TINY, entry=True,
                          entry_args=[f"--dir={registry}", f"--weights-repo=org/tiny@{COMMIT}",
                                      "--submitter=Tester", "--pretraining=none"])
    assert work_until_empty(runner.path)["finished"] == {"done": 1}
    (path,) = (registry / "entries").glob("*.json")
    entry = read_entry(path)
    metrics = json.loads((runner.job_run(job_id) / "metrics.json").read_text())
    assert entry.origin == "submission" and entry.dataset.release == "synthetic"
    assert entry.weights.revision == COMMIT and entry.verified is None
    assert entry.reported.scenario("AD-LT").mAP == round(100 * metrics["AD-LT"]["mAP"], 2)

    # Another attempt of this job (as after its worker was lost) would skip both steps: no duplicate entry.
    with open_queue(runner) as queue:
        steps = job_steps(queue.get(job_id), runner)
    assert [step.name for step in steps] == ["train", "entry"] and all(step.complete() for step in steps)


def test_a_verify_job_writes_the_verified_block_and_the_app_shows_the_queue(tmp_path, registry, tiny_synth_root,
                                                                            hf_cache, signer, monkeypatch):
    monkeypatch.setenv("ATZOO_VERIFIER", signer.name)
    package = make_measured_package(tmp_path, tiny_synth_root)
    commit = populate_hf_cache(hf_cache, "org/tiny-baseline", package)
    path = submit(package, registry, weights_ref=f"org/tiny-baseline@{commit}", submitter="Tester",
                  pretraining="none")

    runner = open_runner_dir(tmp_path / "runner", create=True)
    submit_verify(runner.path, path, tiny_synth_root)
    assert LeaderboardApp(registry, runner_dir=runner.path).queue()["state"].tolist() == ["queued"]
    assert work_until_empty(runner.path)["finished"] == {"done": 1}

    verified = read_entry(path).verified
    assert verified.status == "verified" and verified.max_difference == 0.0 and verified.verifier == signer.name
    assert load_snapshot(registry).get(path.stem).verified == verified
    (row,) = queue_rows(runner.path)
    view = LeaderboardApp(registry, runner_dir=runner.path).queue()
    assert view.to_dict("records") == [row] and row["kind"] == "verify" and row["state"] == "done"
