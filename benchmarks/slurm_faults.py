"""Fault injection for the Slurm backend on a real cluster (the one `tests/slurm/local-cluster.sh` starts):
tiny train jobs submitted with `--backend slurm` while faults are injected at random moments:

- requeue a running job (`scontrol requeue`; Slurm holds it back for the credential lifetime, 10 s on the
  local cluster, before it may start again),
- cancel a job (`atzoo runner cancel`, i.e. scancel) and retry it a few seconds later (`atzoo runner retry`),
- restart `slurmd` (the node daemon; the jobs' step daemons keep running).

One job suffers at most `--faults-per-job` requeues and cancels (3), so that every job can finish.

At the end it reports jobs lost (not done, or an incomplete run folder), jobs duplicated (an epoch trained
twice in one run's log, a second "done" in a job's history, two Slurm jobs of one atzoo job active at
once, or processes of two attempts alive together), and whether every finished job's model and metrics
equal those of an uninterrupted local run of the same recipe (`atzoo train`, one per seed).

    python benchmarks/slurm_faults.py --jobs 20 --seed 0
    python benchmarks/slurm_faults.py --jobs 20 --seed 0 --no-faults     # the column without faults

Prints the figures as a table and as one JSON line; exits 1 if any job is lost, duplicated or unequal.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from atzoo.errors import ServiceError
from atzoo.runner.rundir import METRICS, MODEL
from atzoo.service import cancel_job, get_job, open_queue, open_runner_dir, retry_job
from atzoo.service.control import job_record, submit_slurm_train, sync_slurm
from atzoo.service.slurm import job_name
from atzoo.service.slurm_options import SlurmOptions
from service_faults import OverlapWatcher, check_run  # the local service's fault benchmark, beside this one

CLUSTER_SCRIPT = Path(__file__).resolve().parents[1] / "tests" / "slurm" / "local-cluster.sh"
TINY = ["iters_per_epoch=4", "image_size=[32,16]", "num_workers=0", "num_persons=4", "num_instances=4",
        "eval_batch_size=64", "cache=false"]
FINAL = ("done", "failed", "cancelled")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per tiny job (a checkpoint after each)")
    parser.add_argument("--seeds", type=int, default=2, help="job i trains with seed i mod SEEDS")
    parser.add_argument("--fault-every", type=float, nargs=2, default=(2.0, 6.0), metavar=("MIN", "MAX"),
                        help="seconds between faults, drawn uniformly")
    parser.add_argument("--faults-per-job", type=int, default=3,
                        help="requeues and cancels one job suffers at most (so that every job can finish)")
    parser.add_argument("--no-faults", action="store_true", help="inject nothing (the baseline column)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=3600, help="give up after this many seconds")
    parser.add_argument("--workdir", type=Path, help="where the dataset and runner directory go (default: a temp dir)")
    return parser.parse_args()


def slurm(*argv: str, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=120, check=check)


def active_slurm_jobs(names: dict[str, int]) -> collections.Counter:
    """How many Slurm jobs of each atzoo job are pending or running now."""
    listed = slurm("squeue", "-h", "-t", "PENDING,RUNNING,CONFIGURING,COMPLETING,REQUEUED", "-o", "%j")
    return collections.Counter(names[name] for name in listed.stdout.split() if name in names)


def reference_runs(workdir: Path, data: Path, settings: list[str], seeds: int) -> dict[int, Path]:
    """One uninterrupted local run per seed (`atzoo train`, one thread, as the Slurm jobs)."""
    runs = {}
    for seed in range(seeds):
        out = workdir / f"reference-seed{seed}"
        if not (out / METRICS).is_file():
            subprocess.run([sys.executable, "-m", "atzoo", "--strict", "train", "baseline", "--data", str(data),
                            "--out", str(out), *[part for s in [*settings, f"seed={seed}"] for part in ("--set", s)]],
                           check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        runs[seed] = out
    return runs


def measured(run: Path) -> dict:
    """The run's metrics without the evaluation's date, which differs between two runs of the same job."""
    metrics = json.loads((run / METRICS).read_text())
    metrics.get("provenance", {}).pop("date", None)
    return metrics


def same_run(run: Path, reference: Path) -> bool:
    from safetensors.torch import load_file

    if measured(run) != measured(reference):
        return False
    mine, theirs = load_file(str(run / MODEL)), load_file(str(reference / MODEL))
    return sorted(mine) == sorted(theirs) and all(bool((mine[k] == theirs[k]).all()) for k in mine)


class Faults:
    """The fault injector: picks a fault, keeps the follow-up (retrying a cancelled job) and counts what
    it did."""

    def __init__(self, runner_dir: Path, rng: random.Random, per_job: int) -> None:
        self.runner_dir = runner_dir
        self.rng = rng
        self.per_job = per_job
        self.hits: collections.Counter = collections.Counter()
        self.counts: collections.Counter = collections.Counter()
        self.retries: list[tuple[float, int]] = []

    def inject(self, running: list[tuple[int, str]], alive: list[int]) -> None:
        roll = self.rng.random()
        running = [(job_id, slurm_id) for job_id, slurm_id in running if self.hits[job_id] < self.per_job]
        alive = [job_id for job_id in alive if self.hits[job_id] < self.per_job]
        if roll < 0.5 and running:
            job_id, slurm_id = self.rng.choice(running)
            if slurm("scontrol", "requeue", slurm_id).returncode == 0:
                self.counts["requeue"] += 1
                self.hits[job_id] += 1
        elif roll < 0.75 and alive:
            job_id = self.rng.choice(alive)
            try:
                if cancel_job(self.runner_dir, job_id).state == "cancelled":
                    self.counts["cancel"] += 1
                    self.hits[job_id] += 1
                    self.retries.append((time.monotonic() + self.rng.uniform(2, 6), job_id))
            except ServiceError:
                self.counts["cancel refused (job just ended)"] += 1
        else:
            slurm("bash", str(CLUSTER_SCRIPT), "stop-daemon", "slurmd", check=True)
            slurm("bash", str(CLUSTER_SCRIPT), "start", check=True)
            self.counts["slurmd restart"] += 1

    def follow_up(self) -> None:
        now = time.monotonic()
        for due, job_id in list(self.retries):
            if due <= now:
                try:
                    retry_job(self.runner_dir, job_id)
                    self.retries.remove((due, job_id))
                    self.counts["retry"] += 1
                except ServiceError:
                    pass  # its Slurm job is still ending; try again next round

    @property
    def pending(self) -> bool:
        return bool(self.retries)


def main() -> int:
    args = parse_args()
    rng = random.Random(args.seed)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="atzoo-slurm-faults-"))
    data = workdir / "at-ustc"
    if not data.exists():
        from atzoo.data.synthetic import TINY as TINY_SIZE, generate
        generate(data, TINY_SIZE, progress=False)
    settings = [f"epochs={args.epochs}", *TINY]
    references = reference_runs(workdir, data, settings, args.seeds)
    runner_dir = workdir / ("runner-no-faults" if args.no_faults else f"runner-seed{args.seed}")
    options = SlurmOptions(cpus_per_task=1, time="30")

    started = time.perf_counter()
    os.environ["OMP_NUM_THREADS"] = "1"
    submissions = [submit_slurm_train(runner_dir, "baseline", data, [*settings, f"seed={index % args.seeds}"], options)
                   for index in range(args.jobs)]
    ids = [submission.job_id for submission in submissions]
    runner = open_runner_dir(runner_dir)
    names = {job_name(runner, job_id): job_id for job_id in ids}
    watcher = OverlapWatcher(runner.identity)
    watcher.start()
    faults = Faults(runner_dir, rng, args.faults_per_job)
    twice_active: set[int] = set()
    deadline = time.monotonic() + args.timeout
    next_fault = time.monotonic() + rng.uniform(*args.fault_every)
    while True:
        sync_slurm(runner_dir)
        with open_queue(runner) as queue:
            jobs = {job.id: job for job in queue.jobs()}
        twice_active |= {job_id for job_id, count in active_slurm_jobs(names).items() if count > 1}
        if all(job.state in FINAL for job in jobs.values()) and not faults.pending:
            break
        if time.monotonic() > deadline:
            print("timed out", file=sys.stderr)
            break
        faults.follow_up()
        if not args.no_faults and time.monotonic() >= next_fault:
            next_fault = time.monotonic() + rng.uniform(*args.fault_every)
            rows = {job_id: job_record(runner_dir, job_id) for job_id, job in jobs.items() if job.state == "running"}
            running = [(job_id, row["slurm_job"]) for job_id, row in rows.items()
                       if row.get("scheduler_state") == "RUNNING" and row.get("slurm_job")]
            faults.inject(running, [job_id for job_id, job in jobs.items() if job.state in ("queued", "running")])
        time.sleep(1.0)
    wall = time.perf_counter() - started
    watcher.stopped.set()
    watcher.join()

    final = {job_id: get_job(runner_dir, job_id) for job_id in ids}
    lost = {job_id: job.reason or job.state for job_id, job in final.items() if job.state != "done"}
    lost.update({job_id: problem for job_id in ids if job_id not in lost
                 and (problem := check_run(runner.job_run(job_id), args.epochs)) is not None})
    histories = {job_id: job_record(runner_dir, job_id)["slurm"]["history"] for job_id in ids}
    done_twice = {job_id for job_id, history in histories.items()
                  if [entry["event"] for entry in history].count("done") > 1}
    duplicated = done_twice | twice_active | set(watcher.overlaps)
    equal = [job_id for job_id in ids if job_id not in lost
             and same_run(runner.job_run(job_id), references[(ids.index(job_id)) % args.seeds])]
    resumed = sum(1 for job_id in ids if "--resume" in runner.job_log(job_id).read_text())
    attempts = collections.Counter(job.attempts for job in final.values())
    summary = {
        "jobs": args.jobs, "faults": "off" if args.no_faults else f"seed {args.seed}", "wall_s": round(wall, 1),
        "states": dict(collections.Counter(job.state for job in final.values())),
        "lost": len(lost), "duplicated": len(duplicated),
        "equal_to_uninterrupted": f"{len(equal)} of {args.jobs - len(lost)} finished",
        "faults_injected": dict(faults.counts), "jobs_hit": len(faults.hits),
        "runs_resumed_from_checkpoint": resumed,
        "attempts_histogram": {str(k): v for k, v in sorted(attempts.items())},
        "overlap_scans": watcher.scans,
    }
    ok = not lost and not duplicated and len(equal) == args.jobs
    for key, value in summary.items():
        print(f"{key:>30}: {value}")
    if lost:
        print(f"lost: {lost}", file=sys.stderr)
    if duplicated:
        print(f"duplicated: done twice {done_twice}, two Slurm jobs active {twice_active}, "
              f"overlapping attempts {watcher.overlaps}", file=sys.stderr)
    print(json.dumps({**summary, "ok": ok}))
    print(f"{'result':>30}: {'OK' if ok else 'FAILED'} (work dir {workdir})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
