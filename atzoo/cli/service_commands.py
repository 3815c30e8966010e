"""`atzoo runner ...`: submit jobs to the shared runner's queue, watch them, and run workers."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any
from pathlib import Path

import click

from atzoo.cli.output import console, user_errors
from atzoo.service.control import DEFAULT_STALE_AFTER_S, WORKER_GONE
from atzoo.service.runnerdir import DEFAULT_RUNNER_DIR, ENV_RUNNER_DIR

STATE_STYLES = {"queued": "cyan", "running": "yellow", "done": "green", "failed": "red", "cancelled": "dim"}


class PositiveFinite(click.FloatRange):
    """A number greater than 0 (or at least 0 with `zero_ok`) that is neither NaN nor infinite: NaN passes
    every range comparison, so a plain `FloatRange` would let `--time-limit nan` through as no limit."""

    def __init__(self, zero_ok: bool = False) -> None:
        super().__init__(min=0, min_open=not zero_ok)

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def _runner_dir(ctx: click.Context) -> Path:
    return ctx.ensure_object(dict)["runner_dir"]


@click.group()
@click.option("--runner-dir", type=click.Path(path_type=Path), envvar=ENV_RUNNER_DIR, default=DEFAULT_RUNNER_DIR,
              show_default=True, help=f"The runner directory (also: {ENV_RUNNER_DIR}).")
@click.pass_context
def runner(ctx: click.Context, runner_dir: Path) -> None:
    """The shared runner as a service: a job queue and the workers that run it."""
    ctx.ensure_object(dict)["runner_dir"] = runner_dir


@runner.group()
def submit() -> None:
    """Queue a training or verification job."""


def _limits(function):
    function = click.option("--time-limit", type=PositiveFinite(), metavar="SECONDS",
                            help="Stop the job (failed) after this many seconds of one attempt.")(function)
    return click.option("--memory-limit", type=PositiveFinite(), metavar="GB",
                        help="Cap each process's address space (RLIMIT_AS) at this many GB.")(function)


@submit.command("train")
@click.argument("method")
@click.option("--data", "data_root", required=True, type=click.Path(path_type=Path), help="Dataset root.")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Override a training setting. Repeatable.")
@click.option("--gpus", type=click.IntRange(min=1), default=1, show_default=True,
              help="GPUs for the job; more than 1 launches it with torchrun (DistributedDataParallel).")
@click.option("--entry", is_flag=True, help="After training, also run `atzoo submit` on the run (leaderboard entry).")
@click.option("--entry-arg", "entry_args", multiple=True, metavar="ARG",
              help="An argument for that `atzoo submit`, e.g. --entry-arg=--submitter=NAME. Repeatable.")
@_limits
@click.pass_context
def submit_train_command(ctx: click.Context, method: str, data_root: Path, settings: tuple[str, ...], gpus: int,
                         entry: bool, entry_args: tuple[str, ...], time_limit: float | None,
                         memory_limit: float | None) -> None:
    """Queue the training of METHOD (checked now: method, settings and dataset)."""
    from atzoo.service import submit_train

    with user_errors():
        job_id = submit_train(_runner_dir(ctx), method, data_root, list(settings), gpus=gpus,
                              time_limit_s=time_limit, memory_limit_gb=memory_limit, entry=entry,
                              entry_args=entry_args)
    click.echo(f"job {job_id} queued: train {method}")


@submit.command("verify")
@click.argument("entry", type=click.Path(path_type=Path))
@click.option("--data", "data_root", required=True, type=click.Path(path_type=Path), help="Dataset root.")
@_limits
@click.pass_context
def submit_verify_command(ctx: click.Context, entry: Path, data_root: Path, time_limit: float | None,
                          memory_limit: float | None) -> None:
    """Queue the verification of the leaderboard entry file ENTRY."""
    from atzoo.service import submit_verify

    with user_errors():
        job_id = submit_verify(_runner_dir(ctx), entry, data_root, time_limit_s=time_limit,
                               memory_limit_gb=memory_limit)
    click.echo(f"job {job_id} queued: verify {entry}")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@runner.command()
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Every job: queued, running, done, failed or cancelled, with durations."""
    from rich.table import Table

    from atzoo.service import queue_rows

    with user_errors():
        rows = queue_rows(_runner_dir(ctx), missing_ok=False)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"Jobs in {_runner_dir(ctx)}")
    for column in ("id", "kind", "target", "state", "attempts", "submitted", "duration", "reason"):
        table.add_column(column, overflow="fold")
    for row in rows:
        style = STATE_STYLES.get(row["state"], "red")
        table.add_row(str(row["id"]), row["kind"], row["target"], f"[{style}]{row['state']}[/]", str(row["attempts"]),
                      row["submitted"] or "", _duration(row["duration_s"]), row["reason"] or "")
    counts = {state: sum(row["state"] == state for row in rows) for state in STATE_STYLES}
    out = console()
    out.print(table)
    out.print(", ".join(f"{count} {state}" for state, count in counts.items()))
    for row in rows:
        if row["state"] == "damaged":
            click.echo(f"job {row['id']}: damaged: {row['reason']}", err=True)


@runner.command()
@click.pass_context
def recover(ctx: click.Context) -> None:
    """Rebuild the queue from the job folders' records (after a lost, emptied, damaged or foreign queue
    file). Rows that are still readable are kept; a damaged queue file is moved aside, never deleted."""
    from atzoo.service.control import recover_queue

    with user_errors():
        recovery = recover_queue(_runner_dir(ctx))
    if recovery.moved_aside:
        click.echo(f"the old queue file was moved aside to {recovery.moved_aside}")
    click.echo(f"kept {recovery.kept_rows} row(s); added {len(recovery.added)} job(s) from their folders"
               + (": " + ", ".join(f"{job_id} ({state})" for job_id, state in sorted(recovery.added.items()))
                  if recovery.added else ""))
    for folder, why in recovery.skipped.items():
        click.echo(f"skipped {folder}: {why}", err=True)


@runner.command()
@click.argument("job_id", type=int)
@click.option("--tail", type=click.IntRange(min=1), help="Only the last N lines.")
@click.pass_context
def logs(ctx: click.Context, job_id: int, tail: int | None) -> None:
    """Print the log of job JOB_ID (every attempt), and why it failed."""
    from atzoo.service import get_job, job_log_path

    with user_errors():
        path = job_log_path(_runner_dir(ctx), job_id)
        job = get_job(_runner_dir(ctx), job_id)
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    lines = [line.rsplit("\r", 1)[-1] for line in text.splitlines()]
    click.echo("\n".join(lines[-tail:] if tail else lines))
    if job.reason:
        click.echo(f"job {job_id} {job.state}: {job.reason}", err=True)


def _stale_after_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--stale-after", type=PositiveFinite(), default=DEFAULT_STALE_AFTER_S, show_default=True,
                        metavar="SECONDS", help=help_text)


@runner.command()
@click.argument("job_id", type=int)
@_stale_after_option("A running job without heartbeat for this long has lost its worker: it is cancelled "
                     "at once, its leftover processes on this machine killed.")
@click.pass_context
def cancel(ctx: click.Context, job_id: int, stale_after: float) -> None:
    """Cancel job JOB_ID: at once if queued, or if running without a live worker; otherwise its worker
    stops it (SIGTERM, then SIGKILL)."""
    from atzoo.service import cancel_job

    with user_errors():
        job = cancel_job(_runner_dir(ctx), job_id, stale_after_s=stale_after)
    if job.state != "cancelled":
        click.echo(f"job {job_id}: cancel requested; its worker stops it within a heartbeat")
    elif job.reason == WORKER_GONE:
        click.echo(f"job {job_id} cancelled: its worker was gone (no heartbeat for over {stale_after:g} s)")
    else:
        click.echo(f"job {job_id} cancelled")


@runner.command()
@click.argument("job_id", type=int)
@click.pass_context
def retry(ctx: click.Context, job_id: int) -> None:
    """Queue failed or cancelled job JOB_ID again; a train job resumes from its last checkpoint."""
    from atzoo.service import retry_job

    with user_errors():
        retry_job(_runner_dir(ctx), job_id)
    click.echo(f"job {job_id} queued again")


def _parse_gpus(value: str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    gpus = tuple(part.strip() for part in value.split(","))
    if not all(part.isdigit() for part in gpus) or len(set(gpus)) != len(gpus):
        raise click.BadParameter(f"expected distinct GPU indices such as 0,1; got {value!r}", param_hint="--gpus")
    return gpus


def _warn_without_cuda(gpus: tuple[str, ...]) -> None:
    """GPU indices on a machine without CUDA are accepted (a CPU box can drain a queue too), but said once."""
    import torch

    if not torch.cuda.is_available():
        click.echo(f"Warning: --gpus {','.join(gpus)} given but CUDA is not available here; jobs run on the CPU "
                   f"(CUDA_VISIBLE_DEVICES is still set for them)", err=True)


@runner.command()
@click.option("--gpus", help="GPU indices this worker owns, e.g. 0,1 (default: one device, whatever is visible).")
@click.option("--max-jobs", type=click.IntRange(min=1), help="Stop after finishing this many jobs.")
@click.option("--until-empty", is_flag=True,
              help="Stop once nothing is running and no queued job fits this worker's devices.")
@click.option("--heartbeat", type=PositiveFinite(), default=5.0, show_default=True,
              metavar="SECONDS", help="How often the running job's heartbeat is written.")
@_stale_after_option("A running job without heartbeat for this long is taken over.")
@click.option("--poll", type=PositiveFinite(), default=1.0, show_default=True,
              metavar="SECONDS", help="How often to look for work and watch the running job.")
@click.option("--grace", type=PositiveFinite(zero_ok=True), default=10.0, show_default=True, metavar="SECONDS",
              help="Between SIGTERM and SIGKILL when a job is stopped.")
@click.option("--max-attempts", type=click.IntRange(min=1), default=5, show_default=True,
              help="An orphaned job is failed instead of resumed after this many attempts.")
@click.pass_context
def work(ctx: click.Context, gpus: str | None, max_jobs: int | None, until_empty: bool, heartbeat: float,
         stale_after: float, poll: float, grace: float, max_attempts: int) -> None:
    """Run jobs from the queue, one at a time, each in its own subprocess. SIGTERM/Ctrl-C stops the
    worker and hands its running job back to the queue."""
    from atzoo.service import Worker, WorkerOptions, open_runner_dir

    if heartbeat >= stale_after:
        raise click.BadParameter(f"--heartbeat ({heartbeat:g}) must be shorter than --stale-after ({stale_after:g})",
                                 param_hint="--heartbeat")
    devices = _parse_gpus(gpus)
    if devices:
        _warn_without_cuda(devices)
    options = WorkerOptions(gpus=devices, max_jobs=max_jobs, until_empty=until_empty,
                            heartbeat_s=heartbeat, stale_after_s=stale_after, poll_s=poll, grace_s=grace,
                            max_attempts=max_attempts)
    with user_errors():
        summary = Worker(open_runner_dir(_runner_dir(ctx), create=True), options,
                         say=lambda message: click.echo(message, err=True)).run()
    click.echo(json.dumps({"worker": summary.worker, "finished": summary.finished}))
