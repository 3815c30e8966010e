"""`atzoo runner ...`: submit jobs to the shared runner's queue, watch them, and run workers."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from atzoo.cli.output import console, user_errors
from atzoo.service.control import DEFAULT_STALE_AFTER_S, WORKER_GONE
from atzoo.service.runnerdir import DEFAULT_RUNNER_DIR, ENV_RUNNER_DIR

if TYPE_CHECKING:
    from atzoo.service.control import SlurmSubmission
    from atzoo.service.slurm import SyncReport
    from atzoo.service.slurm_options import SlurmOptions

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


SLURM_OPTIONS = (
    ("--partition", str, "PARTITION", "Slurm partition."),
    ("--nodes", click.IntRange(min=1), "N", "Nodes for the job."),
    ("--tasks-per-node", click.IntRange(min=1), "N",
     "Processes per node (default: one per GPU, else 1); several train with DDP (gloo on CPUs)."),
    ("--gpus-per-node", click.IntRange(min=1), "N", "GPUs per node (one task each)."),
    ("--cpus-per-task", click.IntRange(min=1), "N", "CPUs per task (also the task's OMP_NUM_THREADS)."),
    ("--mem", str, "SIZE", "Memory per node, in Slurm's syntax (16G, 4000M)."),
    ("--time", str, "TIME", "Time limit, in Slurm's syntax (MINUTES, HH:MM:SS, D-HH:MM:SS)."),
    ("--account", str, "ACCOUNT", "Slurm account to charge."),
    ("--qos", str, "QOS", "Slurm quality of service."),
    ("--constraint", str, "FEATURES", "Node features the job needs."),
)


def _slurm_option_flags(function: Callable) -> Callable:
    """The Slurm options of `submit` and `slurm-defaults` (`--slurm-arg KEY=VALUE` for any other)."""
    function = click.option("--slurm-arg", "slurm_args", multiple=True, metavar="KEY=VALUE",
                            help="Any other sbatch option, e.g. --slurm-arg mail-type=END. Repeatable.")(function)
    for flag, kind, metavar, text in reversed(SLURM_OPTIONS):
        function = click.option(flag, type=kind, metavar=metavar, help=f"[slurm] {text}")(function)
    return function


def _backend_options(function: Callable) -> Callable:
    function = _slurm_option_flags(function)
    return click.option("--backend", type=click.Choice(["local", "slurm"]), default="local", show_default=True,
                        help="Who runs the job: the local workers (`atzoo runner work`) or a Slurm cluster.")(function)


def _slurm_request(values: dict[str, Any]) -> dict[str, Any]:
    return {flag.lstrip("-").replace("-", "_"): values.pop(flag.lstrip("-").replace("-", "_"))
            for flag, *_ in SLURM_OPTIONS}


def _slurm_options(backend: str, slurm_values: dict[str, Any], slurm_args: tuple[str, ...],
                   local: dict[str, tuple[str, Any, Any]]) -> SlurmOptions | None:
    """The Slurm options of a submission, refusing options of the other backend."""
    from atzoo.service.slurm_options import SlurmOptions, parse_slurm_args

    given = [f"--{name.replace('_', '-')}" for name, value in slurm_values.items() if value is not None]
    given += ["--slurm-arg"] if slurm_args else []
    if backend == "local":
        if given:
            raise click.UsageError(f"{', '.join(given)} apply to --backend slurm only")
        return None
    wrong = [flag for flag, value, default in local.values() if value != default]
    if wrong:
        hints = {"--gpus": "--gpus-per-node (and --nodes)", "--time-limit": "--time", "--memory-limit": "--mem"}
        raise click.UsageError("; ".join(f"{flag} is the local backend's: with --backend slurm use {hints[flag]}"
                                         for flag in wrong))
    return SlurmOptions(**slurm_values, args=parse_slurm_args(slurm_args))


def _report_slurm(submission: SlurmSubmission, what: str) -> None:
    for warning in submission.warnings:
        click.echo(f"Warning: {warning}", err=True)
    if submission.slurm_job:
        click.echo(f"job {submission.job_id} submitted to Slurm as job {submission.slurm_job}: {what}")
    else:
        click.echo(f"job {submission.job_id} queued (not in Slurm yet): {what}")


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
@_backend_options
@click.pass_context
def submit_train_command(ctx: click.Context, method: str, data_root: Path, settings: tuple[str, ...], gpus: int,
                         entry: bool, entry_args: tuple[str, ...], time_limit: float | None,
                         memory_limit: float | None, backend: str, slurm_args: tuple[str, ...],
                         **slurm_values: Any) -> None:
    """Queue the training of METHOD (checked now: method, settings and dataset). With --backend slurm it
    is submitted to Slurm through submitit."""
    from atzoo.service import submit_train
    from atzoo.service.control import submit_slurm_train

    with user_errors():
        options = _slurm_options(backend, _slurm_request(slurm_values), slurm_args,
                                 {"gpus": ("--gpus", gpus, 1), "time_limit": ("--time-limit", time_limit, None),
                                  "memory_limit": ("--memory-limit", memory_limit, None)})
        if options is not None:
            submission = submit_slurm_train(_runner_dir(ctx), method, data_root, list(settings), options,
                                            entry=entry, entry_args=entry_args)
            _report_slurm(submission, f"train {method}")
            return
        job_id = submit_train(_runner_dir(ctx), method, data_root, list(settings), gpus=gpus,
                              time_limit_s=time_limit, memory_limit_gb=memory_limit, entry=entry,
                              entry_args=entry_args)
    click.echo(f"job {job_id} queued: train {method}")


@submit.command("verify")
@click.argument("entry", type=click.Path(path_type=Path))
@click.option("--data", "data_root", required=True, type=click.Path(path_type=Path), help="Dataset root.")
@_limits
@_backend_options
@click.pass_context
def submit_verify_command(ctx: click.Context, entry: Path, data_root: Path, time_limit: float | None,
                          memory_limit: float | None, backend: str, slurm_args: tuple[str, ...],
                          **slurm_values: Any) -> None:
    """Queue the verification of the leaderboard entry file ENTRY."""
    from atzoo.service import submit_verify
    from atzoo.service.control import submit_slurm_verify

    with user_errors():
        options = _slurm_options(backend, _slurm_request(slurm_values), slurm_args,
                                 {"time_limit": ("--time-limit", time_limit, None),
                                  "memory_limit": ("--memory-limit", memory_limit, None)})
        if options is not None:
            _report_slurm(submit_slurm_verify(_runner_dir(ctx), entry, data_root, options), f"verify {entry}")
            return
        job_id = submit_verify(_runner_dir(ctx), entry, data_root, time_limit_s=time_limit,
                               memory_limit_gb=memory_limit)
    click.echo(f"job {job_id} queued: verify {entry}")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _say_sync(report: SyncReport) -> None:
    for job_id, slurm_job in report.submitted:
        click.echo(f"job {job_id} submitted to Slurm as job {slurm_job}", err=True)
    for job_id, message in report.deferred:
        click.echo(f"Warning: job {job_id} stays queued: the Slurm controller is unreachable ({message})", err=True)
    for job_id, message in report.refused:
        click.echo(f"Warning: Slurm refused job {job_id}: {message}", err=True)
    for problem in report.problems:
        click.echo(f"Warning: {problem}", err=True)


@runner.command()
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@click.option("--no-sync", is_flag=True, help="Show the recorded states without asking Slurm.")
@click.pass_context
def status(ctx: click.Context, as_json: bool, no_sync: bool) -> None:
    """Every job of both backends: queued, running, done, failed or cancelled, with durations (and for
    Slurm jobs the Slurm job id, the scheduler's state and the node)."""
    from rich.table import Table

    from atzoo.service import queue_rows
    from atzoo.service.control import sync_slurm

    with user_errors():
        rows = queue_rows(_runner_dir(ctx), missing_ok=False)
        if not no_sync and any(row["backend"] == "slurm" for row in rows):
            _say_sync(sync_slurm(_runner_dir(ctx)))
            rows = queue_rows(_runner_dir(ctx), missing_ok=False)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"Jobs in {_runner_dir(ctx)}")
    with_slurm = any(row["backend"] == "slurm" for row in rows)
    columns = ["id", "kind", "target", "state", "attempts", "submitted", "duration", "reason"]
    if with_slurm:
        columns[4:4] = ["backend", "slurm job", "scheduler", "node"]
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        style = STATE_STYLES.get(row["state"], "red")
        cells = [str(row["id"]), row["kind"], row["target"], f"[{style}]{row['state']}[/]", str(row["attempts"]),
                 row["submitted"] or "", _duration(row["duration_s"]), row["reason"] or ""]
        if with_slurm:
            cells[4:4] = [row["backend"], row.get("slurm_job") or "", row.get("scheduler_state") or "",
                          row.get("node") or ""]
        table.add_row(*cells)
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
    if job.backend == "slurm" and not text:
        click.echo(f"job {job_id} has no output yet; Slurm's own logs of it are in {path.parent / 'slurm'}", err=True)
    if job.reason:
        click.echo(f"job {job_id} {job.state}: {job.reason}", err=True)


@runner.command()
@click.argument("job_id", type=int)
@click.pass_context
def show(ctx: click.Context, job_id: int) -> None:
    """Print the whole record of job JOB_ID as JSON: request, run folder, log, and for a Slurm job its
    options, commands, Slurm job ids and state history."""
    from atzoo.service.control import job_record

    with user_errors():
        record = job_record(_runner_dir(ctx), job_id)
    click.echo(json.dumps(record, indent=2))


@runner.command()
@click.pass_context
def sync(ctx: click.Context) -> None:
    """Bring the Slurm jobs' records up to date: submit those that wait for the controller, record
    the scheduler's states. (`status` does this too.)"""
    from atzoo.service.control import sync_slurm

    with user_errors():
        report = sync_slurm(_runner_dir(ctx))
    _say_sync(report)
    click.echo(json.dumps({"submitted": len(report.submitted), "deferred": len(report.deferred),
                           "refused": len(report.refused), "changed": len(report.changed)}))


@runner.command("slurm-defaults")
@_slurm_option_flags
@click.option("--clear", is_flag=True, help="Replace the defaults by the options given (none: remove them all).")
@click.pass_context
def slurm_defaults_command(ctx: click.Context, slurm_args: tuple[str, ...], clear: bool, **slurm_values: Any) -> None:
    """Show or set the runner directory's Slurm defaults (a lab sets partition, account, time... once;
    a submission's own options win). Without options, prints them."""
    from atzoo.service.control import slurm_defaults
    from atzoo.service.slurm_options import SlurmOptions, parse_slurm_args

    with user_errors():
        values = _slurm_request(slurm_values)
        given = any(value is not None for value in values.values()) or bool(slurm_args)
        options = SlurmOptions(**values, args=parse_slurm_args(slurm_args)) if given or clear else None
        defaults = slurm_defaults(_runner_dir(ctx), options, clear=clear)
    click.echo(json.dumps(defaults.to_json(), indent=2))


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
