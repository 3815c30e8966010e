"""The Slurm backend of the runner service: the same train and verify jobs, run by a Slurm cluster
through submitit, recorded in the runner directory beside the local workers' jobs.

The record of a Slurm job is its row in the queue's `jobs` table (backend `slurm`; no local worker
ever claims it) plus a `slurm_jobs` row (resolved sbatch options, the commands it runs, the Slurm job
id, the scheduler's last state, node and elapsed time) and its `slurm_history` (every submission,
state change, cancel and retry). Nothing of atzoo runs on the login node between commands: each
`submit`, `status`, `sync`, `cancel` and `retry` brings the record up to date with the scheduler
(`sync`): a job the controller could not take is submitted once it is back, a state change is
recorded, and a job Slurm no longer knows (a controller that lost its state) is marked failed with
that reason, never silently dropped. What runs inside the allocation is `atzoo.service.slurm_task`.

Exactly once: a job is submitted under a name unique to the runner directory and job
(`atzoo-<runner id>-<job>`); a submission that was cut off between `sbatch` and its record is found
again by that name instead of being submitted twice. Two commands never submit the same job at once
(the submission is claimed in one SQLite transaction). A requeued job resumes from its last checkpoint
and a finished one skips its completed steps, so one run folder holds one set of results.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from atzoo.errors import ServiceError
from atzoo.io import read_json, write_json_atomic
from atzoo.runner.rundir import TRAIN_LOG
from atzoo.service.jobs import Step, job_result, train_steps, verify_steps
from atzoo.service.queue import TERMINAL, Job, Queue
from atzoo.service.runnerdir import RunnerDir
from atzoo.service.slurm_task import SlurmTask, read_events
from atzoo.service.worker import error_line, log_tail

SETTINGS_FILE = "settings.json"
SETTINGS_FORMAT = "atzoo-runner-settings-1"
SLURM_FOLDER = "slurm"
CLIENT_COMMANDS = ("sbatch", "squeue", "sacct", "scancel", "srun", "sinfo")
INSTALL_HINT = ("Install Slurm's client commands and point them at your cluster (Debian/Ubuntu: `apt-get install "
                "slurm-client munge`, with the cluster's slurm.conf and munge key; a single-node test cluster: "
                "`tests/slurm/local-cluster.sh`), or use the local backend: submit without `--backend slurm` and "
                "run `atzoo runner work`")
UNREACHABLE = ("Unable to contact slurm controller", "Socket timed out", "Connection refused",
               "Zero Bytes were transmitted", "Unable to connect", "Connection timed out")
COMMAND_TIMEOUT_S = 120.0
SUBMISSION_STALE_S = 300.0
VANISHED_GRACE_S = 60.0
UNLIMITED_TIME_MINUTES = 3 * 24 * 60
SHORT_TIME_S = 300
MAX_SIGNAL_DELAY_S = 90
SCHEDULER_PREFIX = "scheduler "

QUEUED_STATES = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SPECIAL_EXIT"}
RUNNING_STATES = {"RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "STAGE_OUT", "RESIZING", "SIGNALING",
                  "STOPPED"}
FINISHED_STATES = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL",
                   "DEADLINE", "PREEMPTED", "REVOKED"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS slurm_jobs (
    job_id INTEGER PRIMARY KEY,
    options TEXT NOT NULL,
    command TEXT NOT NULL,
    slurm_id TEXT,
    submitting REAL,
    scheduler_state TEXT,
    node TEXT,
    elapsed_s REAL,
    checked REAL
);
CREATE TABLE IF NOT EXISTS slurm_history (
    job_id INTEGER NOT NULL,
    time REAL NOT NULL,
    slurm_id TEXT,
    event TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS slurm_history_by_job ON slurm_history (job_id, time);
"""

# --slurm-arg keys that atzoo sets itself, and those that have an option of their own
RESERVED_ARGS = {"output": "", "error": "", "array": "", "signal": "", "open-mode": "", "job-name": "",
                 "comment": "", "wrap": "", "parsable": "", "test-only": "", "ntasks": "--tasks-per-node",
                 "requeue": "", "no-requeue": "", "export": ""}
DEDICATED_ARGS = {"partition": "--partition", "p": "--partition", "nodes": "--nodes", "N": "--nodes",
                  "ntasks-per-node": "--tasks-per-node", "gpus-per-node": "--gpus-per-node",
                  "cpus-per-task": "--cpus-per-task", "c": "--cpus-per-task", "mem": "--mem", "time": "--time",
                  "t": "--time", "account": "--account", "A": "--account", "qos": "--qos", "q": "--qos",
                  "constraint": "--constraint", "C": "--constraint"}
ARG_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
MEMORY = re.compile(r"^[0-9]+(\.[0-9]+)?[KMGT]?B?$", re.IGNORECASE)
TIME = re.compile(r"^(?:(?P<days>[0-9]+)-)?(?P<a>[0-9]+)(?::(?P<b>[0-9]+))?(?::(?P<c>[0-9]+))?$")


class ControllerUnreachable(ServiceError):
    """The Slurm controller did not answer (it is down, or the network is): try again later."""


class SlurmRefused(ServiceError):
    """Slurm refused a request (an unknown partition or account, a limit the job exceeds)."""


# -- options ---------------------------------------------------------------------------------------


def time_seconds(text: str) -> int:
    """A Slurm time limit in seconds: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M` or `D-H:M:S`."""
    match = TIME.match(text.strip())
    if not match:
        raise ServiceError(f"--time {text!r} is not a Slurm time: expected MINUTES, MINUTES:SECONDS, "
                           f"HOURS:MINUTES:SECONDS, DAYS-HOURS, DAYS-HOURS:MINUTES or DAYS-HOURS:MINUTES:SECONDS")
    days, parts = match["days"], [int(part) for part in (match["a"], match["b"], match["c"]) if part is not None]
    if days is not None:
        hours, minutes, seconds = (parts + [0, 0])[:3]
        total = int(days) * 86400 + hours * 3600 + minutes * 60 + seconds
    elif len(parts) == 3:
        total = parts[0] * 3600 + parts[1] * 60 + parts[2]
    else:
        total = parts[0] * 60 + (parts[1] if len(parts) == 2 else 0)
    if total <= 0:
        raise ServiceError(f"--time {text!r} is not a positive time limit")
    return total


@dataclass(frozen=True)
class SlurmOptions:
    """What a Slurm job asks for. `None` leaves the choice to the runner directory's defaults, then to
    Slurm. `args`: any other sbatch option, as (KEY, VALUE) pairs (`--slurm-arg KEY=VALUE`)."""

    partition: str | None = None
    nodes: int | None = None
    tasks_per_node: int | None = None
    gpus_per_node: int | None = None
    cpus_per_task: int | None = None
    mem: str | None = None
    time: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    args: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for name in ("nodes", "tasks_per_node", "gpus_per_node", "cpus_per_task"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ServiceError(f"--{name.replace('_', '-')} must be a whole number of at least 1, got {value!r}")
        for name in ("partition", "mem", "time", "account", "qos", "constraint"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip() or "\n" in value):
                raise ServiceError(f"--{name} must be a non-empty one-line text, got {value!r}")
        if self.mem is not None and not MEMORY.match(self.mem):
            raise ServiceError(f"--mem {self.mem!r} is not a Slurm memory size: expected a number with an optional "
                               f"unit K, M, G or T (e.g. 16G, 4000M)")
        if self.time is not None:
            time_seconds(self.time)
        for key, value in self.args:
            _check_arg(key, value)

    def over(self, defaults: SlurmOptions) -> SlurmOptions:
        """These options, each unset one taken from `defaults` (extra args merged, these winning)."""
        merged = {f.name: getattr(self, f.name) if getattr(self, f.name) is not None else getattr(defaults, f.name)
                  for f in fields(self) if f.name != "args"}
        args = dict(defaults.args)
        args.update(dict(self.args))
        return SlurmOptions(**merged, args=tuple(args.items()))

    @property
    def tasks(self) -> int:
        """Tasks per node: one per GPU, else `--tasks-per-node`, else 1."""
        return self.tasks_per_node or self.gpus_per_node or 1

    def to_json(self) -> dict[str, Any]:
        data = {key: value for key, value in asdict(self).items() if value is not None and key != "args"}
        if self.args:
            data["args"] = dict(self.args)
        return data

    @classmethod
    def from_json(cls, data: Any, source: str) -> SlurmOptions:
        if not isinstance(data, dict):
            raise ServiceError(f"{source}: expected an object of Slurm options, found {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ServiceError(f"{source}: unknown Slurm option(s) {', '.join(unknown)}; expected some of "
                               f"{', '.join(sorted(known))}")
        args = data.get("args", {})
        if not isinstance(args, dict) or not all(isinstance(v, str) for v in args.values()):
            raise ServiceError(f"{source}: 'args' must be an object of sbatch option names to text values")
        try:
            return cls(**{**{k: v for k, v in data.items() if k != "args"}, "args": tuple(args.items())})
        except ServiceError as error:
            raise ServiceError(f"{source}: {error}") from None


def _check_arg(key: str, value: str) -> None:
    if not ARG_KEY.match(key):
        raise ServiceError(f"--slurm-arg {key}={value}: {key!r} is not an sbatch option name (letters, digits, -)")
    name = key.replace("_", "-")
    if name in RESERVED_ARGS:
        hint = RESERVED_ARGS[name]
        raise ServiceError(f"--slurm-arg {key}: atzoo sets --{name} itself" + (f"; use {hint}" if hint else ""))
    if name in DEDICATED_ARGS:
        raise ServiceError(f"--slurm-arg {key}: use {DEDICATED_ARGS[name]} instead")
    if "\n" in value:
        raise ServiceError(f"--slurm-arg {key}: the value must be one line")


def parse_slurm_args(pairs: list[str] | tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """`["mail-type=END", "exclusive"]` -> `(("mail-type", "END"), ("exclusive", ""))`; a key alone is a flag."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        _check_arg(key.strip(), value)
        parsed[key.strip().replace("_", "-")] = value
    return tuple(parsed.items())


# -- lab defaults: the runner directory's settings ------------------------------------------------


def settings_path(runner: RunnerDir) -> Path:
    return runner.path / SETTINGS_FILE


def read_defaults(runner: RunnerDir) -> SlurmOptions:
    """The runner directory's Slurm defaults (`settings.json`, key `slurm`), or none."""
    path = settings_path(runner)
    if not path.exists():
        return SlurmOptions()
    try:
        data = read_json(path)
    except (OSError, ValueError) as error:
        raise ServiceError(f"{path} cannot be read as JSON ({error}); fix or remove it") from None
    if not isinstance(data, dict) or data.get("format") != SETTINGS_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ServiceError(f"{path} has format {found!r}; expected {SETTINGS_FORMAT!r}")
    return SlurmOptions.from_json(data.get("slurm", {}), f"{path} field 'slurm'")


def write_defaults(runner: RunnerDir, options: SlurmOptions, *, merge: bool = True) -> SlurmOptions:
    """Set the runner directory's Slurm defaults (merged into the present ones unless `merge` is off)."""
    combined = options.over(read_defaults(runner)) if merge else options
    write_json_atomic(settings_path(runner), {"format": SETTINGS_FORMAT, "slurm": combined.to_json()})
    return combined


# -- Slurm's commands ----------------------------------------------------------------------------


def missing_client_commands() -> list[str]:
    return [command for command in CLIENT_COMMANDS if shutil.which(command) is None]


def require_client() -> None:
    missing = missing_client_commands()
    if missing:
        raise ServiceError(f"the Slurm backend needs Slurm's commands, and {', '.join(missing)} "
                           f"{'is' if len(missing) == 1 else 'are'} not installed here (not on PATH). {INSTALL_HINT}")


def _message(output: str) -> str:
    """Slurm's complaint, without the `sbatch: error:` prefixes, on one line."""
    lines = [re.sub(r"^(\w+: )?(error: |fatal: )?(allocation failure: )?", "", line.strip())
             for line in output.splitlines() if line.strip()]
    return "; ".join(dict.fromkeys(line for line in lines if line)) or "no message"


def _run(argv: list[str], *, timeout: float = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run a Slurm command; an unreachable controller is `ControllerUnreachable`."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        require_client()
        raise
    except subprocess.TimeoutExpired:
        raise ControllerUnreachable(f"`{argv[0]}` got no answer within {timeout:g} s") from None
    if done.returncode != 0 and any(marker in done.stderr for marker in UNREACHABLE):
        raise ControllerUnreachable(f"{argv[0]}: {_message(done.stderr)}")
    return done


@dataclass(frozen=True)
class Seen:
    """One Slurm job as the controller (squeue) or the accounting (sacct) reports it."""

    slurm_id: str
    name: str
    state: str
    node: str | None
    elapsed_s: float | None = None
    exit_code: str | None = None


def _node(text: str) -> str | None:
    return None if text in ("", "None assigned", "(null)") or text.startswith("(") else text


def controller_view(ids: list[str]) -> dict[str, Seen]:
    """What the controller knows of these jobs (squeue); jobs it does not know are left out."""
    if not ids:
        return {}
    done = _run(["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", "%i|%j|%T|%N|%M"])
    if done.returncode != 0:
        if "Invalid job id" in done.stderr:
            return {}
        raise ServiceError(f"squeue failed: {_message(done.stderr)}")
    seen = {}
    for line in done.stdout.splitlines():
        parts = line.split("|")
        if len(parts) != 5:
            continue
        elapsed = _elapsed(parts[4])
        seen[parts[0]] = Seen(parts[0], parts[1], parts[2].split()[0], _node(parts[3]), elapsed)
    return seen


def _elapsed(text: str) -> float | None:
    try:
        return float(time_seconds(text)) if text not in ("", "0:00") else 0.0
    except ServiceError:
        return None


def accounting_view(ids: list[str]) -> dict[str, Seen] | None:
    """What the accounting database knows of these jobs (sacct), or None when it cannot be asked."""
    if not ids:
        return {}
    try:
        done = _run(["sacct", "-X", "-n", "-P", "-j", ",".join(ids), "-o",
                     "JobIDRaw,JobName,State,NodeList,ElapsedRaw,ExitCode"])
    except ControllerUnreachable:
        return None
    if done.returncode != 0:
        return None
    seen = {}
    for line in done.stdout.splitlines():
        parts = line.split("|")
        if len(parts) != 6:
            continue
        elapsed = float(parts[4]) if parts[4].isdigit() else None
        seen[parts[0]] = Seen(parts[0], parts[1], parts[2].split()[0], _node(parts[3]), elapsed, parts[5])
    return seen


def active_ids_named(name: str) -> list[str]:
    """Slurm jobs the controller still holds (queued, running, or just ended) under this job name."""
    done = _run(["squeue", "-h", "-t", "all", "--name", name, "-o", "%i|%T"])
    if done.returncode != 0:
        raise ServiceError(f"squeue failed: {_message(done.stderr)}")
    return [line.split("|")[0] for line in done.stdout.splitlines() if line.strip()]


def default_partition() -> str | None:
    done = _run(["sinfo", "-h", "-o", "%P"])
    for line in done.stdout.split():
        if line.endswith("*"):
            return line[:-1]
    return None


def partition_times(partition: str) -> tuple[str, str] | None:
    """The partition's default and maximum time limits as sinfo prints them, or None if unknown."""
    done = _run(["sinfo", "-h", "-p", partition, "-o", "%L|%l"])
    lines = [line for line in done.stdout.splitlines() if "|" in line]
    if done.returncode != 0 or not lines:
        return None
    default, maximum = lines[0].split("|", 1)
    return default.strip(), maximum.strip()


def partition_gres(partition: str) -> list[str]:
    done = _run(["sinfo", "-h", "-p", partition, "-o", "%G"])
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def scancel(slurm_id: str) -> None:
    done = _run(["scancel", slurm_id])
    if done.returncode != 0:
        raise SlurmRefused(f"scancel {slurm_id}: {_message(done.stderr)}")


# -- the record ----------------------------------------------------------------------------------


def job_name(runner: RunnerDir, job_id: int) -> str:
    """The Slurm job name: unique to this runner directory and job (how a lost submission is found)."""
    return f"atzoo-{runner.identity[:12]}-{job_id}"


def parse_job_name(name: str) -> tuple[str, int] | None:
    match = re.fullmatch(r"atzoo-([0-9a-f]{12})-([0-9]+)", name)
    return (match[1], int(match[2])) if match else None


@dataclass(frozen=True)
class Record:
    job_id: int
    options: SlurmOptions
    command: list[str]
    slurm_id: str | None
    submitting: float | None
    scheduler_state: str | None
    node: str | None
    elapsed_s: float | None
    checked: float | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Record:
        values = dict(row)
        values["options"] = SlurmOptions.from_json(json.loads(values["options"]), f"Slurm record of job {row['job_id']}")
        values["command"] = json.loads(values["command"])
        return cls(**values)


class SlurmRecords:
    """The Slurm tables of a runner directory's queue file (its own connection to the same SQLite file,
    which `open_queue` has already checked). Every change is one `BEGIN IMMEDIATE` transaction."""

    def __init__(self, runner: RunnerDir, *, create: bool = False) -> None:
        self.runner = runner
        self._db = sqlite3.connect(str(runner.queue_file), timeout=30.0, isolation_level=None,
                                   check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA synchronous=FULL")
        self.exists = self._has_tables()
        if create and not self.exists:
            with self.transaction() as db:
                for statement in filter(str.strip, SCHEMA.split(";")):
                    db.execute(statement)
            self.exists = True

    def _has_tables(self) -> bool:
        names = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return {"slurm_jobs", "slurm_history"} <= names

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SlurmRecords:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as error:
            raise ServiceError(f"queue file {self.runner.queue_file} cannot be written: {error}") from None
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def get(self, job_id: int) -> Record | None:
        if not self.exists:
            return None
        row = self._db.execute("SELECT * FROM slurm_jobs WHERE job_id = ?", (job_id,)).fetchone()
        return Record.from_row(row) if row else None

    def all(self) -> dict[int, Record]:
        if not self.exists:
            return {}
        return {row["job_id"]: Record.from_row(row) for row in self._db.execute("SELECT * FROM slurm_jobs")}

    def history(self, job_id: int) -> list[dict[str, Any]]:
        if not self.exists:
            return []
        return [dict(row) for row in self._db.execute(
            "SELECT time, slurm_id, event, detail FROM slurm_history WHERE job_id = ? ORDER BY time, rowid",
            (job_id,))]

    def known_ids(self, job_id: int) -> set[str]:
        return {entry["slurm_id"] for entry in self.history(job_id) if entry["slurm_id"]}

    @staticmethod
    def _note(db: sqlite3.Connection, job_id: int, event: str, detail: str | None = None,
              slurm_id: str | None = None) -> None:
        db.execute("INSERT INTO slurm_history (job_id, time, slurm_id, event, detail) VALUES (?, ?, ?, ?, ?)",
                   (job_id, time.time(), slurm_id, event, detail))

    def note(self, job_id: int, event: str, detail: str | None = None, slurm_id: str | None = None) -> None:
        with self.transaction() as db:
            self._note(db, job_id, event, detail, slurm_id)

    def add(self, job_id: int, options: SlurmOptions, command: list[str]) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO slurm_jobs (job_id, options, command) VALUES (?, ?, ?)",
                       (job_id, json.dumps(options.to_json()), json.dumps(command)))
            self._note(db, job_id, "queued", "recorded in the runner directory")

    def claim_submission(self, job_id: int) -> bool:
        """Take the right to submit a queued job that has no Slurm job yet (False: it has one, or
        another command is submitting it right now)."""
        now = time.time()
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE slurm_jobs SET submitting = ? WHERE job_id = ? AND slurm_id IS NULL AND "
                "(submitting IS NULL OR submitting < ?) AND job_id IN "
                "(SELECT id FROM jobs WHERE state = 'queued' AND backend = 'slurm')",
                (now, job_id, now - SUBMISSION_STALE_S))
            return cursor.rowcount == 1

    def submitted(self, job_id: int, slurm_id: str, detail: str) -> bool:
        """Record the Slurm job; False if the atzoo job was cancelled meanwhile (then cancel it in Slurm)."""
        with self.transaction() as db:
            db.execute("UPDATE slurm_jobs SET slurm_id = ?, submitting = NULL, scheduler_state = 'PENDING', "
                       "node = NULL, elapsed_s = NULL, checked = ? WHERE job_id = ?", (slurm_id, time.time(), job_id))
            self._note(db, job_id, "submitted", detail, slurm_id)
            state = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
            return state == "queued"

    def submission_deferred(self, job_id: int, reason: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE slurm_jobs SET submitting = NULL WHERE job_id = ?", (job_id,))
            db.execute("UPDATE jobs SET reason = ? WHERE id = ? AND state = 'queued'",
                       (f"not submitted yet: {reason}", job_id))
            self._note(db, job_id, "submission deferred", reason)

    def observe(self, job_id: int, slurm_id: str, state: str, node: str | None, elapsed_s: float | None) -> None:
        """The scheduler's view of the job, with a history entry when its state changed."""
        with self.transaction() as db:
            row = db.execute("SELECT scheduler_state, slurm_id FROM slurm_jobs WHERE job_id = ?", (job_id,)).fetchone()
            if row is None or row["slurm_id"] != slurm_id:
                return
            db.execute("UPDATE slurm_jobs SET scheduler_state = ?, node = COALESCE(?, node), "
                       "elapsed_s = COALESCE(?, elapsed_s), checked = ? WHERE job_id = ?",
                       (state, node, elapsed_s, time.time(), job_id))
            if row["scheduler_state"] != state:
                self._note(db, job_id, SCHEDULER_PREFIX + state, node, slurm_id)

    def set_state(self, job_id: int, state: str, *, reason: str | None = None, returncode: int | None = None,
                  log_tail_text: str | None = None, result: dict[str, Any] | None = None) -> bool:
        """Move an unfinished Slurm job to `state` (a finished job is never changed here). Attempts and
        start and end times come from the events the job's tasks wrote."""
        now = time.time()
        events = read_events(self.runner.job_events(job_id))
        starts = [event["time"] for event in events if event.get("event") == "start" and "time" in event]
        ends = [event["time"] for event in events if event.get("event") == "end" and "time" in event]
        started = starts[0] if starts else None
        with self.transaction() as db:
            if state in TERMINAL:
                finished = ends[-1] if ends and state == "done" else now
                cursor = db.execute(
                    "UPDATE jobs SET state = ?, attempts = MAX(attempts, ?), finished = ?, reason = ?, returncode = ?, "
                    "log_tail = ?, result = ?, started = COALESCE(started, ?) WHERE id = ? AND backend = 'slurm' "
                    "AND state IN ('queued', 'running')",
                    (state, len(starts), finished, reason, returncode, log_tail_text,
                     json.dumps(result) if result is not None else None, started, job_id))
            else:
                cursor = db.execute(
                    "UPDATE jobs SET state = ?, attempts = MAX(attempts, ?), reason = ?, "
                    "started = COALESCE(started, ?) WHERE id = ? AND backend = 'slurm' "
                    "AND state IN ('queued', 'running')",
                    (state, len(starts), reason, started, job_id))
            if cursor.rowcount == 1 and state in TERMINAL:
                self._note(db, job_id, state, reason)
            return cursor.rowcount == 1

    def forget_slurm_job(self, job_id: int, detail: str) -> None:
        """Before a retry: the old Slurm job stays in the history only."""
        with self.transaction() as db:
            db.execute("UPDATE slurm_jobs SET slurm_id = NULL, submitting = NULL, scheduler_state = NULL, node = NULL, "
                       "elapsed_s = NULL WHERE job_id = ?", (job_id,))
            self._note(db, job_id, "retry", detail)


# -- submitting ----------------------------------------------------------------------------------


@dataclass
class SyncReport:
    """What a sync did and what it could not do, for the command to say."""

    submitted: list[tuple[int, str]] = field(default_factory=list)
    deferred: list[tuple[int, str]] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)
    changed: list[tuple[int, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def resolve_options(options: SlurmOptions) -> SlurmOptions:
    """The options a job is submitted with: a time limit is always set (the partition's default, else its
    maximum, else three days), since submitit needs it to tell a time limit from a preemption."""
    if options.time is not None:
        return options
    try:
        partition = options.partition or default_partition()
        times = partition_times(partition) if partition else None
    except ControllerUnreachable:
        times = None
    for limit in times or ():
        if limit not in ("n/a", "infinite", "UNLIMITED", ""):
            with contextlib.suppress(ServiceError):
                time_seconds(limit)
                return replace(options, time=limit)
    return replace(options, time=str(UNLIMITED_TIME_MINUTES))


def signal_delay_s(options: SlurmOptions) -> int:
    """How long before the time limit Slurm signals the job (submitit then requeues it): 90 s, or a
    quarter of a short limit."""
    return max(10, min(MAX_SIGNAL_DELAY_S, time_seconds(options.time or "0:10:00") // 4))


def executor_parameters(options: SlurmOptions, name: str, comment: str) -> dict[str, Any]:
    """submitit's `SlurmExecutor.update_parameters` arguments for these options."""
    parameters: dict[str, Any] = {
        "job_name": name, "comment": comment, "nodes": options.nodes or 1, "ntasks_per_node": options.tasks,
        "time": math.ceil(time_seconds(options.time or "0:10:00") / 60), "signal_delay_s": signal_delay_s(options),
    }
    for key in ("partition", "gpus_per_node", "cpus_per_task", "account", "qos", "constraint"):
        if getattr(options, key) is not None:
            parameters[key] = getattr(options, key)
    additional: dict[str, Any] = {}
    if options.mem is not None:
        additional["mem"] = options.mem
    for key, value in options.args:
        additional[key] = value if value != "" else True
    if additional:
        parameters["additional_parameters"] = additional
    return parameters


def sbatch_flags(parameters: dict[str, Any]) -> list[str]:
    """The sbatch command-line flags equal to the `#SBATCH` lines submitit writes for `parameters`."""
    flat = {key: value for key, value in parameters.items() if key not in ("signal_delay_s", "additional_parameters")}
    flat.update(parameters.get("additional_parameters", {}))
    return [f"--{key.replace('_', '-')}" if value is True else f"--{key.replace('_', '-')}={value}"
            for key, value in flat.items()]


def preflight(options: SlurmOptions, what: str) -> None:
    """Ask Slurm whether it would take the job (`sbatch --test-only`), so a request it refuses (unknown
    partition or account, GPUs a partition does not have, a limit exceeded) is refused before anything
    is queued. An unreachable controller raises `ControllerUnreachable`."""
    partition = options.partition or default_partition()
    if options.gpus_per_node and partition:
        gres = partition_gres(partition)
        if gres and not any("gpu" in entry for entry in gres):
            raise SlurmRefused(f"Slurm cannot run {what}: partition {partition!r} has no GPUs (its nodes' generic "
                               f"resources: {', '.join(gres)}), so --gpus-per-node {options.gpus_per_node} cannot be "
                               f"met. Choose a GPU partition (`sinfo -o '%P %G'`) or drop --gpus-per-node (on CPUs "
                               f"use --tasks-per-node; training then uses gloo)")
    parameters = executor_parameters(options, "atzoo-preflight", "atzoo preflight")
    done = _run(["sbatch", "--test-only", *sbatch_flags(parameters), "--output=/dev/null", "--wrap=true"])
    if done.returncode != 0:
        raise SlurmRefused(f"Slurm refuses {what}: {_message(done.stderr)}; nothing was queued")


def _clean_leftovers(folder: Path) -> None:
    """A failed sbatch leaves submitit's unsubmitted script and pickle behind: remove them."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.name.startswith(".submission_file_") or re.fullmatch(r"[0-9a-f]{32}\.pkl", path.name):
            path.unlink(missing_ok=True)


def _sbatch(runner: RunnerDir, job: Job, record: Record, python: str) -> str:
    """Submit the job through submitit; returns the Slurm job id."""
    import submitit
    from submitit.core.utils import FailedJobError

    folder = runner.job_dir(job.id) / SLURM_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    executor = submitit.SlurmExecutor(folder=folder, python=shlex.quote(python))
    executor.update_parameters(**executor_parameters(record.options, job_name(runner, job.id),
                                                     f"atzoo runner {runner.path} job {job.id}"))
    task = SlurmTask(str(runner.path), runner.identity, job, python)
    noise = io.StringIO()
    try:
        with contextlib.redirect_stderr(noise), contextlib.redirect_stdout(noise):
            submitted = executor.submit(task)
    except FailedJobError as error:
        _clean_leftovers(folder)
        message = str(error)
        if any(marker in message for marker in UNREACHABLE):
            raise ControllerUnreachable(f"sbatch: {_message(message)}") from None
        raise SlurmRefused(f"sbatch: {_message(message)}") from None
    return str(submitted.job_id)


def submit_pending(runner: RunnerDir, records: SlurmRecords, job: Job, report: SyncReport,
                   python: str = sys.executable) -> None:
    """Submit a queued Slurm job that has no Slurm job yet, exactly once."""
    if not records.claim_submission(job.id):
        return
    record = records.get(job.id)
    assert record is not None
    try:
        known = records.known_ids(job.id)
        found = [slurm_id for slurm_id in active_ids_named(job_name(runner, job.id)) if slurm_id not in known]
        if found:
            slurm_id, detail = found[-1], "found under its job name (an earlier submission was cut off)"
        else:
            slurm_id, detail = _sbatch(runner, job, record, python), "sbatch"
    except ControllerUnreachable as error:
        records.submission_deferred(job.id, f"the Slurm controller is unreachable ({error}); it is submitted "
                                            f"when the controller is back (`atzoo runner status` or `sync`)")
        report.deferred.append((job.id, str(error)))
        return
    except ServiceError as error:
        records.note(job.id, "submission refused", str(error))
        records.set_state(job.id, "failed", reason=f"Slurm refused the job: {error}")
        report.refused.append((job.id, str(error)))
        return
    if not records.submitted(job.id, slurm_id, detail):
        with contextlib.suppress(ServiceError):
            scancel(slurm_id)
        records.note(job.id, "cancelled in Slurm", "the job was cancelled while it was being submitted", slurm_id)
    report.submitted.append((job.id, slurm_id))


def defer(runner: RunnerDir, job_id: int, reason: str) -> None:
    """Leave a new job queued in the runner directory: the controller could not be reached."""
    with SlurmRecords(runner) as records:
        records.submission_deferred(job_id, f"the Slurm controller is unreachable ({reason}); it is submitted "
                                            f"when the controller is back (`atzoo runner status` or `sync`)")


def record_job(runner: RunnerDir, job: Job, options: SlurmOptions, python: str = sys.executable) -> None:
    """The Slurm part of a new job's record: its options and the commands its first attempt runs."""
    steps = _steps_of(runner, job, python)
    with SlurmRecords(runner, create=True) as records:
        records.add(job.id, options, [shlex.join(step.argv) for step in steps])


def _steps_of(runner: RunnerDir, job: Job, python: str) -> list[Step]:
    single = replace(job, gpus=1)
    if job.kind == "train":
        return train_steps(single, runner, resume=False, python=python)
    return verify_steps(single, runner, python=python)


# -- time-limit advice ---------------------------------------------------------------------------


def _epoch_seconds(run: Path) -> list[float]:
    path = run / TRAIN_LOG
    if not path.is_file():
        return []
    seconds = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        with contextlib.suppress(json.JSONDecodeError, TypeError, ValueError):
            value = json.loads(line).get("seconds")
            if isinstance(value, (int, float)) and math.isfinite(value):
                seconds.append(float(value))
    return seconds


def time_limit_warning(runner: RunnerDir, queue: Queue, target: str, options: SlurmOptions,
                       checkpoint_every: int) -> str | None:
    """A warning when the time limit looks too short for the job to write its first checkpoint before
    Slurm's signal: judged from the newest finished run of the same method in this runner directory,
    else from a floor of five minutes (start-up alone takes a good part of a minute)."""
    limit = time_seconds(options.time or "0")
    usable = limit - signal_delay_s(options)
    for job in reversed(queue.jobs()):
        if job.kind != "train" or job.target != target or job.state != "done":
            continue
        epochs = _epoch_seconds(runner.job_run(job.id))
        if not epochs:
            continue
        needed = sum(epochs) / len(epochs) * checkpoint_every
        if needed >= usable:
            return (f"--time {options.time} may be too short to reach the first checkpoint: job {job.id} of {target} "
                    f"in this runner directory took {needed / checkpoint_every:.0f} s per epoch, a checkpoint is "
                    f"written every {checkpoint_every} epoch(s) (about {needed:.0f} s plus start-up), and Slurm "
                    f"signals the job {signal_delay_s(options)} s before its limit; a job requeued at its time "
                    f"limit before any checkpoint starts over every time")
        return None
    if limit < SHORT_TIME_S:
        return (f"--time {options.time} is under {SHORT_TIME_S // 60} minutes: start-up (Python, plugins, the "
                f"dataset) takes a good part of that, and no finished run of {target} in this runner directory tells "
                f"how long the first checkpoint takes; a job requeued before any checkpoint starts over every time")
    return None


# -- watching ------------------------------------------------------------------------------------


def atzoo_state(slurm_state: str) -> str | None:
    if slurm_state in QUEUED_STATES:
        return "queued"
    if slurm_state in RUNNING_STATES:
        return "running"
    if slurm_state == "COMPLETED":
        return "done"
    if slurm_state == "CANCELLED":
        return "cancelled"
    if slurm_state in FINISHED_STATES:
        return "failed"
    return None


def vanished_reason(slurm_id: str, job_id: int) -> str:
    return (f"vanished: Slurm no longer knows its Slurm job {slurm_id} (the controller lost its state, or the job "
            f"was purged); `atzoo runner retry {job_id}` submits it again and a train job resumes from its last "
            f"checkpoint")


def _log_reason(runner: RunnerDir, job_id: int, slurm_id: str) -> str | None:
    """The line that says why the job failed: from the job log, else from submitit's error log (a job
    that failed before its first step started)."""
    reason = error_line(log_tail(runner.job_log(job_id), 200))
    if reason is None:
        reason = error_line(log_tail(runner.job_dir(job_id) / SLURM_FOLDER / f"{slurm_id}_0_log.err", 200))
    return reason


def _finish(runner: RunnerDir, records: SlurmRecords, job: Job, seen: Seen, report: SyncReport) -> None:
    state = atzoo_state(seen.state)
    if state == "done":
        steps = _steps_of(runner, job, sys.executable)
        missing = [step.name for step in steps if not step.complete()]
        if not missing:
            if records.set_state(job.id, "done", returncode=0, result=job_result(job, runner)):
                report.changed.append((job.id, "done"))
            return
        state, reason = "failed", f"Slurm job {seen.slurm_id} COMPLETED but step(s) {', '.join(missing)} left no output"
    elif state == "cancelled":
        reason = f"cancelled in Slurm (Slurm job {seen.slurm_id} {seen.state}, not through `atzoo runner cancel`)"
    else:
        detail = _log_reason(runner, job.id, seen.slurm_id)
        exit_code = f" (exit code {seen.exit_code})" if seen.exit_code and seen.exit_code != "0:0" else ""
        reason = f"Slurm job {seen.slurm_id} ended {seen.state}{exit_code}" + (f": {detail}" if detail else "")
    assert state is not None
    if records.set_state(job.id, state, reason=reason, log_tail_text=log_tail(runner.job_log(job.id))):
        report.changed.append((job.id, state))


def _judge(runner: RunnerDir, records: SlurmRecords, job: Job, record: Record, controller: dict[str, Seen] | None,
           accounting: dict[str, Seen] | None, report: SyncReport) -> None:
    slurm_id = record.slurm_id
    assert slurm_id is not None
    name = job_name(runner, job.id)
    seen = controller.get(slurm_id) if controller is not None else None
    if seen is not None and seen.name != name:
        seen = None
    booked = accounting.get(slurm_id) if accounting is not None else None
    if booked is not None and booked.name != name:
        booked = None
    if seen is None and booked is not None and (controller is None or booked.state in FINISHED_STATES):
        seen = booked
    if seen is None:
        submitted_at = max((entry["time"] for entry in records.history(job.id) if entry["event"] == "submitted"),
                           default=0.0)
        if controller is not None and time.time() - submitted_at > VANISHED_GRACE_S:
            if records.set_state(job.id, "failed",
                                 reason=vanished_reason(slurm_id, job.id)):
                records.note(job.id, "vanished", f"squeue and sacct do not know Slurm job {slurm_id} as {name}",
                             slurm_id)
                report.changed.append((job.id, "failed"))
        return
    elapsed = booked.elapsed_s if booked is not None and booked.elapsed_s is not None else seen.elapsed_s
    records.observe(job.id, slurm_id, seen.state, seen.node or (booked.node if booked else None), elapsed)
    state = atzoo_state(seen.state)
    if state in ("queued", "running"):
        if state != job.state:
            report.changed.append((job.id, state))
        records.set_state(job.id, state,
                          reason=None if state == "running" else f"{SCHEDULER_PREFIX}{seen.state}")
    elif state is not None:
        _finish(runner, records, job, seen, report)


def sync(runner: RunnerDir, queue: Queue, *, job_ids: set[int] | None = None,
         python: str = sys.executable) -> SyncReport:
    """Bring the Slurm jobs' records up to date: submit those still waiting for the controller, read the
    scheduler's state of the others, and record what changed."""
    report = SyncReport()
    with SlurmRecords(runner) as records:
        if not records.exists:
            return report
        slurm_records = records.all()
        jobs = [job for job in queue.jobs() if job.backend == "slurm" and job.state not in TERMINAL
                and (job_ids is None or job.id in job_ids)]
        if not jobs:
            return report
        missing = missing_client_commands()
        if missing:
            report.problems.append(f"{len(jobs)} Slurm job(s) not refreshed: {', '.join(missing)} not installed here")
            return report
        for job in jobs:
            if job.id not in slurm_records:
                records.set_state(job.id, "failed",
                                  reason="its Slurm options were never recorded (the submitting command was "
                                         "interrupted); submit it again")
                report.changed.append((job.id, "failed"))
            elif slurm_records[job.id].slurm_id is None and job.state == "queued":
                submit_pending(runner, records, job, report, python)
        latest = records.all()
        watched = [(job, latest[job.id]) for job in jobs if job.id in latest and latest[job.id].slurm_id is not None]
        ids = sorted({record.slurm_id for _, record in watched if record.slurm_id})
        try:
            controller: dict[str, Seen] | None = controller_view(ids)
        except ControllerUnreachable as error:
            controller = None
            report.problems.append(f"the Slurm controller is unreachable ({error}); states may be stale")
        accounting = accounting_view(ids)
        for job, record in watched:
            _judge(runner, records, job, record, controller, accounting, report)
    return report


# -- user actions --------------------------------------------------------------------------------


def cancel(runner: RunnerDir, queue: Queue, job: Job) -> Job:
    """Cancel a Slurm job: at once if Slurm does not have it yet, else through `scancel`."""
    if job.state in TERMINAL:
        raise ServiceError(f"job {job.id} is already {job.state}; nothing to cancel")
    with SlurmRecords(runner) as records:
        record = records.get(job.id)
        if record is None or record.slurm_id is None:
            cancelled = queue.request_cancel(job.id)
            records.note(job.id, "cancelled", "before it reached Slurm")
            return cancelled
        try:
            scancel(record.slurm_id)
        except ControllerUnreachable as error:
            raise ServiceError(f"job {job.id} (Slurm job {record.slurm_id}) was not cancelled: {error}; nothing "
                               f"changed, try again when the controller is back") from None
        except SlurmRefused as error:
            sync(runner, queue, job_ids={job.id})
            now = queue.get(job.id)
            if now.state in TERMINAL:
                raise ServiceError(f"job {job.id} is already {now.state}; nothing to cancel") from None
            raise ServiceError(f"job {job.id} was not cancelled: {error}") from None
        reason = f"cancelled by request (scancel {record.slurm_id})"
        records.set_state(job.id, "cancelled", reason=reason)
        return queue.get(job.id)


def prepare_retry(runner: RunnerDir, job: Job) -> None:
    """Before a failed or cancelled Slurm job goes back to the queue: its previous Slurm job must be over
    (never two attempts at once); it is then forgotten, so that the next sync submits a new one."""
    with SlurmRecords(runner) as records:
        record = records.get(job.id)
        if record is None or record.slurm_id is None:
            return
        with contextlib.suppress(ControllerUnreachable):
            still = controller_view([record.slurm_id]).get(record.slurm_id)
            if still is not None and still.name == job_name(runner, job.id) and still.state not in FINISHED_STATES:
                raise ServiceError(f"job {job.id}'s Slurm job {record.slurm_id} is still {still.state}; retry once "
                                   f"it has ended (`atzoo runner status`)")
        records.forget_slurm_job(job.id, f"previous Slurm job {record.slurm_id}")


def foreign_job_hint(runner: RunnerDir, job_id: int) -> str | None:
    """When JOB is not a job of this runner directory but a Slurm job id: whose job it is."""
    if missing_client_commands():
        return None
    try:
        seen = controller_view([str(job_id)]).get(str(job_id))
        if seen is None:
            seen = (accounting_view([str(job_id)]) or {}).get(str(job_id))
    except ServiceError:
        return None
    if seen is None:
        return None
    owner = parse_job_name(seen.name)
    if owner is None:
        return (f"{job_id} is a Slurm job id ({seen.name!r}, {seen.state}), not an atzoo job of this runner "
                f"directory; atzoo leaves it alone (use Slurm's own commands for it)")
    identity, atzoo_id = owner
    if identity == runner.identity[:12]:
        return f"Slurm job {job_id} is atzoo job {atzoo_id} of this runner directory: use {atzoo_id}"
    return (f"Slurm job {job_id} belongs to another atzoo runner directory (runner id {identity}..., its job "
            f"{atzoo_id}); nothing was done. Use `atzoo runner --runner-dir THAT_DIR ...` with job {atzoo_id}")


def details(runner: RunnerDir) -> dict[int, dict[str, Any]]:
    """Slurm job id, scheduler state, node and elapsed time of every Slurm job (for status rows)."""
    with SlurmRecords(runner) as records:
        return {job_id: {"slurm_job": record.slurm_id, "scheduler_state": record.scheduler_state,
                         "node": record.node, "elapsed_s": record.elapsed_s}
                for job_id, record in records.all().items()}


def describe(runner: RunnerDir, job: Job) -> dict[str, Any]:
    """The whole record of a Slurm job: options, commands, Slurm ids, state history, files."""
    with SlurmRecords(runner) as records:
        record = records.get(job.id)
        history = records.history(job.id)
    folder = runner.job_dir(job.id) / SLURM_FOLDER
    return {"slurm_job": record.slurm_id if record else None,
            "options": record.options.to_json() if record else None,
            "command": record.command if record else None,
            "scheduler_state": record.scheduler_state if record else None,
            "node": record.node if record else None,
            "elapsed_s": record.elapsed_s if record else None,
            "submitit_folder": str(folder),
            "history": history}
