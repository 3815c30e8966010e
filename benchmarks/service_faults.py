"""Fault injection for the runner service: many tiny train jobs, several workers, workers killed at
random moments (mostly SIGKILL, sometimes SIGTERM) and started again. At the end every job must be
done exactly once, with a complete run directory, and no job may ever have run two attempts at once.

    python benchmarks/service_faults.py --jobs 50 --workers 2 --seed 0

Prints the counts and the wall time as a table and as one JSON line; exits 1 if any check fails.
A watcher thread scans /proc every 20 ms for the processes of each job (they carry the job's mark in
their environment) and records any moment when two attempts of one job were alive together.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from atzoo.runner.rundir import CHECKPOINT, CONFIG, DATASET, ENVIRONMENT, METRICS, MODEL, TRAIN_LOG
from atzoo.service import open_queue, open_runner_dir, submit_train
from atzoo.service.processes import JOB_ENV

RUN_FILES = (CONFIG, CHECKPOINT, MODEL, METRICS, ENVIRONMENT, DATASET, TRAIN_LOG)
TINY = ["iters_per_epoch=2", "image_size=[32,16]", "num_workers=0", "num_persons=4", "num_instances=4",
        "eval_batch_size=64", "cache=false"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per tiny job (a checkpoint after each)")
    parser.add_argument("--kill-every", type=float, nargs=2, default=(1.5, 5.0), metavar=("MIN", "MAX"),
                        help="seconds between kills, drawn uniformly")
    parser.add_argument("--sigterm-share", type=float, default=0.2, help="share of kills sent as SIGTERM")
    parser.add_argument("--heartbeat", type=float, default=0.3)
    parser.add_argument("--stale-after", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=1800, help="give up after this many seconds")
    parser.add_argument("--workdir", type=Path, help="where the dataset and runner directory go (default: a temp dir)")
    return parser.parse_args()


class OverlapWatcher(threading.Thread):
    """Records every job that had processes of two different attempts alive at the same time."""

    def __init__(self, identity: str) -> None:
        super().__init__(daemon=True)
        self.prefix = f"{JOB_ENV}={identity}/".encode()
        self.overlaps: dict[int, set[int]] = {}
        self.scans = 0
        self.stopped = threading.Event()

    def scan(self) -> dict[int, set[int]]:
        attempts: dict[int, set[int]] = collections.defaultdict(set)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            for variable in environ.split(b"\0"):
                if variable.startswith(self.prefix):
                    job, _, attempt = variable[len(self.prefix):].decode().partition("/")
                    attempts[int(job)].add(int(attempt))
        return attempts

    def run(self) -> None:
        while not self.stopped.is_set():
            for job, seen in self.scan().items():
                if len(seen) > 1:
                    self.overlaps.setdefault(job, set()).update(seen)
            self.scans += 1
            time.sleep(0.02)


def start_worker(runner: Path, logs: Path, index: int, incarnation: int, args: argparse.Namespace) -> subprocess.Popen:
    log = open(logs / f"worker{index}.{incarnation}.log", "wb")
    command = [sys.executable, "-m", "atzoo", "runner", "--runner-dir", str(runner), "work",
               "--heartbeat", str(args.heartbeat), "--stale-after", str(args.stale_after), "--poll", "0.1",
               "--grace", "2", "--max-attempts", "100"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)


def events_of(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def check_run(run: Path, epochs: int) -> str | None:
    missing = [name for name in RUN_FILES if not (run / name).is_file()]
    if missing:
        return f"missing {missing}"
    logged = [json.loads(line)["epoch"] for line in (run / TRAIN_LOG).read_text().splitlines()]
    if logged != list(range(1, epochs + 1)):
        return f"train log epochs {logged}"
    return None


def main() -> int:
    args = parse_args()
    rng = random.Random(args.seed)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="atzoo-faults-"))
    data = workdir / "at-ustc"
    if not data.exists():
        from atzoo.data.synthetic import TINY as TINY_SIZE, generate
        generate(data, TINY_SIZE, progress=False)
    runner_path, logs = workdir / "runner", workdir / "worker-logs"
    logs.mkdir(parents=True, exist_ok=True)
    settings = [f"epochs={args.epochs}", *TINY]

    started = time.perf_counter()
    ids = [submit_train(runner_path, "baseline", data, settings) for _ in range(args.jobs)]
    runner = open_runner_dir(runner_path)
    watcher = OverlapWatcher(runner.identity)
    watcher.start()
    incarnations = [0] * args.workers
    workers = [start_worker(runner_path, logs, i, 0, args) for i in range(args.workers)]
    kills: collections.Counter = collections.Counter()
    deadline = time.monotonic() + args.timeout
    next_kill = time.monotonic() + rng.uniform(*args.kill_every)
    with open_queue(runner) as queue:
        while not all(job.state in ("done", "failed", "cancelled") for job in queue.jobs()):
            if time.monotonic() > deadline:
                print("timed out", file=sys.stderr)
                break
            time.sleep(0.05)
            if time.monotonic() < next_kill:
                continue
            next_kill = time.monotonic() + rng.uniform(*args.kill_every)
            index = rng.randrange(args.workers)
            signum = signal.SIGTERM if rng.random() < args.sigterm_share else signal.SIGKILL
            workers[index].send_signal(signum)
            workers[index].wait()
            kills[signal.Signals(signum).name] += 1
            incarnations[index] += 1
            workers[index] = start_worker(runner_path, logs, index, incarnations[index], args)
        final = queue.jobs()
    wall = time.perf_counter() - started
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
        worker.wait()
    watcher.stopped.set()
    watcher.join()

    done_events = {job_id: sum(1 for e in events_of(runner.job_events(job_id))
                               if e["event"] == "end" and e["state"] == "done") for job_id in ids}
    reclaims = sum(1 for job_id in ids for e in events_of(runner.job_events(job_id)) if e["event"] == "reclaim")
    resumed = sum(1 for job_id in ids if "--resume" in runner.job_log(job_id).read_text())
    incomplete = {job.id: problem for job in final
                  if (problem := check_run(runner.job_run(job.id), args.epochs)) is not None}
    states = collections.Counter(job.state for job in final)
    attempts = collections.Counter(job.attempts for job in final)
    summary = {
        "jobs": args.jobs, "workers": args.workers, "seed": args.seed, "wall_s": round(wall, 1),
        "states": dict(states), "done_exactly_once": sum(1 for n in done_events.values() if n == 1),
        "attempts_histogram": {str(k): v for k, v in sorted(attempts.items())},
        "kills": dict(kills), "worker_starts": args.workers + sum(incarnations),
        "orphans_taken_over": reclaims, "runs_resumed_from_checkpoint": resumed,
        "complete_run_dirs": args.jobs - len(incomplete), "overlapping_attempts": len(watcher.overlaps),
        "overlap_scans": watcher.scans,
    }
    ok = (states.get("done", 0) == args.jobs and summary["done_exactly_once"] == args.jobs
          and not incomplete and not watcher.overlaps)
    for key, value in summary.items():
        print(f"{key:>30}: {value}")
    if incomplete:
        print(f"incomplete runs: {incomplete}", file=sys.stderr)
    if watcher.overlaps:
        print(f"overlapping attempts: {watcher.overlaps}", file=sys.stderr)
    print(json.dumps({**summary, "ok": ok}))
    print(f"{'result':>30}: {'OK' if ok else 'FAILED'} (work dir {workdir})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
