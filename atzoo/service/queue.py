"""The job queue: one SQLite file (WAL mode) that every worker and command of a runner directory shares.

Every change of a job's state is one `BEGIN IMMEDIATE` transaction, so two workers never claim the
same job: SQLite lets one writer in at a time, and the claim reads and updates the row inside it.

A running job belongs to one worker *and one attempt* (the `attempts` count at its claim). Every
update a worker makes (heartbeat, pid, finish) is fenced by both: once another worker has reclaimed
a job whose heartbeat went stale, the old worker's late writes match no row and change nothing.
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Iterator

from atzoo.errors import AtzooError, FormatError, ServiceError
from atzoo.formats.special import refuse_special
from atzoo.formats.jobspec import check_job_spec, job_spec_text, parse_job_spec
from atzoo.formats.jsonfile import dump_json, parse_json, write_json
from atzoo.service.runnerdir import RunnerDir

SCHEMA_VERSION = 2
KINDS = ("train", "verify")
BACKENDS = ("local", "slurm")
STATES = ("queued", "running", "done", "failed", "cancelled")
TERMINAL = ("done", "failed", "cancelled")

SCHEMA = f"""
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN {KINDS}),
    target TEXT NOT NULL,
    spec TEXT NOT NULL,
    gpus INTEGER NOT NULL DEFAULT 1 CHECK (gpus >= 1),
    time_limit_s REAL,
    memory_limit_gb REAL,
    state TEXT NOT NULL CHECK (state IN {STATES}),
    attempts INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    pid INTEGER,
    heartbeat REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    submitted REAL NOT NULL,
    started REAL,
    finished REAL,
    returncode INTEGER,
    reason TEXT,
    log_tail TEXT,
    result TEXT,
    backend TEXT NOT NULL DEFAULT 'local' CHECK (backend IN {BACKENDS})
);
CREATE INDEX jobs_by_state ON jobs (state, id);
CREATE TABLE runner (id TEXT NOT NULL);
"""
RECOVER_HINT = "`atzoo runner recover` rebuilds the queue from the job folders' records"
JOB_RECORD = "job.json"
JOB_RECORD_FORMAT = "atzoo-job-1"
NUMBERS = ("gpus", "attempts", "pid", "returncode")
TIMES = ("time_limit_s", "memory_limit_gb", "heartbeat", "submitted", "started", "finished")
# Version 1 had no backend column: every job was the local workers'.
MIGRATE_1_TO_2 = f"ALTER TABLE jobs ADD COLUMN backend TEXT NOT NULL DEFAULT 'local' CHECK (backend IN {BACKENDS})"


@dataclass(frozen=True)
class Job:
    """One row of the queue. `attempts` is also the fencing token of a running job's current attempt.
    `backend`: who runs it, the local workers or Slurm (whose jobs no worker ever claims)."""

    id: int
    kind: str
    target: str
    spec: dict[str, Any]
    gpus: int
    time_limit_s: float | None
    memory_limit_gb: float | None
    state: str
    attempts: int
    worker: str | None
    pid: int | None
    heartbeat: float | None
    cancel_requested: bool
    submitted: float
    started: float | None
    finished: float | None
    returncode: int | None
    reason: str | None
    log_tail: str | None
    result: dict[str, Any] | None
    backend: str = "local"

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        """The row as a Job; a row whose stored values are damaged is a `ServiceError` naming its id and
        column (the other rows stay usable)."""
        values = dict(row)
        job_id = values.get("id")
        problem = row_problem(values)
        if problem:
            raise ServiceError(f"job {job_id}: its queue row is damaged ({problem}); the other jobs are not "
                               f"affected")
        values["spec"] = parse_job_spec(values["kind"], values["spec"], f"job {values['id']}'s spec")
        values["result"] = parse_json(values["result"], f"job {values['id']}'s result") if values["result"] else None
        values["cancel_requested"] = bool(values["cancel_requested"])
        return cls(**values)


def _json_problem(name: str, text: object, required: bool, kind: str | None = None) -> str | None:
    """What is wrong with a stored JSON column (`kind`: the job's, for its spec), or None."""
    if text is None or text == "":
        return f"{name} is empty" if required else None
    if not isinstance(text, str):
        return f"{name} is not JSON text"
    try:
        value = parse_json(text, name)
        if not isinstance(value, dict):
            return f"{name} is not a JSON object"
        if kind is not None:
            parse_job_spec(kind, text, name)
    except FormatError as error:
        return str(error)
    return None


def row_problem(values: dict[str, Any]) -> str | None:
    """What is wrong with a raw queue row, or None."""
    if not isinstance(values.get("id"), int):
        return f"id {values.get('id')!r} is not an integer"
    if values.get("kind") not in KINDS or values.get("state") not in STATES:
        return f"kind {values.get('kind')!r} / state {values.get('state')!r} unknown"
    if values.get("backend", "local") not in BACKENDS:
        return f"backend {values.get('backend')!r} unknown"
    if not isinstance(values.get("target"), str):
        return "target is not text"
    for name in NUMBERS:
        if values.get(name) is not None and not isinstance(values[name], int):
            return f"{name} {values[name]!r} is not an integer"
    for name in TIMES:
        value = values.get(name)
        if value is not None and (not isinstance(value, (int, float)) or not math.isfinite(value)):
            return f"{name} {value!r} is not a finite number"
    return (_json_problem("spec", values.get("spec"), True, values["kind"])
            or _json_problem("result", values.get("result"), False))


@dataclass(frozen=True)
class DamagedRow:
    """A queue row that cannot be read as a job, shown on its own line by `status`."""

    id: Any
    problem: str


@dataclass(frozen=True)
class Claim:
    """A job a worker now owns; `previous_worker` is set when it was taken over from a lost worker."""

    job: Job
    previous_worker: str | None

    @property
    def reclaimed(self) -> bool:
        return self.previous_worker is not None


class Queue:
    """The queue file of a runner directory. Open with `Queue.open`; close when done (or use `with`)."""

    def __init__(self, path: Path, connection: sqlite3.Connection, *, jobs_dir: Path | None = None,
                 runner_identity: str | None = None) -> None:
        self.path = path
        self._db = connection
        self.jobs_dir = jobs_dir
        self.runner_identity = runner_identity

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, *, create: bool = False, busy_timeout_s: float = 30.0,
             jobs_dir: Path | None = None, runner_identity: str | None = None) -> Queue:
        """Open (with `create`, make) the queue file; anything that is not an atzoo queue is refused.
        With `jobs_dir`, a queue file that is empty or new beside existing job folders is refused (it would
        hand their ids out again); with `runner_identity`, so is a queue of another runner directory."""
        path = Path(path)
        if not path.exists() and not create:
            raise ServiceError(f"queue file {path} does not exist")
        try:
            refuse_special(path)
        except AtzooError as error:
            raise ServiceError(str(error)) from None
        try:
            connection = sqlite3.connect(str(path), timeout=busy_timeout_s, isolation_level=None,
                                         check_same_thread=False)
        except sqlite3.Error as error:
            raise ServiceError(f"queue file {path} cannot be opened: {error}") from None
        connection.row_factory = sqlite3.Row
        queue = cls(path, connection, jobs_dir=jobs_dir, runner_identity=runner_identity)
        try:
            queue._prepare(create)
        except BaseException:
            connection.close()
            raise
        return queue

    def _prepare(self, create: bool) -> None:
        with self._translate():
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not tables and create:
                folders = self.job_folder_ids()
                if folders:
                    raise ServiceError(f"queue file {self.path} is empty although {self.jobs_dir} holds "
                                       f"{len(folders)} job folder(s) (up to job {max(folders)}); a fresh queue "
                                       f"would hand their ids out again. {RECOVER_HINT}")
                self._create_schema()
                return
            check = self._db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise ServiceError(f"queue file {self.path} is damaged ({check}); restore it from a backup, or "
                               f"{RECOVER_HINT}")
        if not {"schema_version", "jobs"} <= tables:
            raise ServiceError(f"{self.path} is an SQLite file but not an atzoo queue (no jobs / schema_version "
                               f"tables)")
        with self._translate():
            row = self._db.execute("SELECT version FROM schema_version").fetchone()
        if row is not None and row[0] == 1:
            self._migrate_1_to_2()
            row = (SCHEMA_VERSION,)
        if row is None or row[0] != SCHEMA_VERSION:
            raise ServiceError(f"queue file {self.path} has schema version {row[0] if row else None}; "
                               f"this atzoo reads version {SCHEMA_VERSION}")
        self._check_owner("runner" in tables)

    def _check_owner(self, has_owner_table: bool) -> None:
        """A queue records the runner directory it belongs to; a queue file copied from another one is
        refused (its ids and jobs are not this directory's). A queue made before the record existed
        gets it now."""
        if self.runner_identity is None:
            return
        with self._transaction() as db:
            if not has_owner_table:
                db.execute("CREATE TABLE IF NOT EXISTS runner (id TEXT NOT NULL)")
            row = db.execute("SELECT id FROM runner").fetchone()
            if row is None:
                db.execute("INSERT INTO runner (id) VALUES (?)", (self.runner_identity,))
                return
        if row[0] != self.runner_identity:
            raise ServiceError(f"queue file {self.path} belongs to another runner directory (runner id {row[0]}, "
                               f"this one is {self.runner_identity}); put back this directory's own queue file, "
                               f"or {RECOVER_HINT}")

    def job_folder_ids(self) -> list[int]:
        """The ids of the job folders beside the queue (folders named by a number)."""
        if self.jobs_dir is None or not self.jobs_dir.is_dir():
            return []
        with os.scandir(self.jobs_dir) as entries:
            return sorted(int(entry.name) for entry in entries if entry.name.isdigit())

    def _create_schema(self) -> None:
        with self._transaction() as db:
            if db.execute("SELECT count(*) FROM sqlite_master WHERE name='schema_version'").fetchone()[0]:
                return
            for statement in filter(str.strip, SCHEMA.split(";")):
                db.execute(statement)
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            if self.runner_identity is not None:
                db.execute("INSERT INTO runner (id) VALUES (?)", (self.runner_identity,))

    def _migrate_1_to_2(self) -> None:
        with self._transaction() as db:
            if db.execute("SELECT version FROM schema_version").fetchone()[0] == 1:
                db.execute(MIGRATE_1_TO_2)
                db.execute("UPDATE schema_version SET version = 2")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _translate(self) -> Iterator[None]:
        """SQLite errors become `ServiceError`s that name the file."""
        try:
            yield
        except sqlite3.DatabaseError as error:
            if "locked" in str(error) or "busy" in str(error):
                raise ServiceError(f"queue file {self.path} stayed locked by another process: {error}") from None
            raise ServiceError(f"{self.path} is not a readable atzoo queue file ({error}); it is damaged or "
                               f"not a queue. The jobs/ folder beside it still holds every job's log and run: "
                               f"{RECOVER_HINT}") from None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._translate():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- reading -------------------------------------------------------------------------------

    def get(self, job_id: int) -> Job:
        with self._translate():
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise ServiceError(f"no job {job_id} in queue {self.path}")
        return Job.from_row(row)

    def jobs(self) -> list[Job]:
        """Every readable job, oldest first (damaged rows are left out: see `scan`)."""
        return self.scan()[0]

    def scan(self) -> tuple[list[Job], list[DamagedRow]]:
        """Every row, oldest first: the jobs, and the rows that are damaged, each with its problem."""
        jobs, damaged = [], []
        with self._translate():
            rows = self._db.execute("SELECT * FROM jobs ORDER BY id").fetchall()
        for row in rows:
            problem = row_problem(dict(row))
            if problem:
                damaged.append(DamagedRow(row["id"], problem))
            else:
                jobs.append(Job.from_row(row))
        return jobs, damaged

    def max_id(self) -> int:
        """The highest id ever used: in the rows, in SQLite's sequence, and among the job folders."""
        with self._translate():
            in_rows = self._db.execute("SELECT max(id) FROM jobs").fetchone()[0] or 0
            sequence = self._db.execute("SELECT max(seq) FROM sqlite_sequence WHERE name = 'jobs'").fetchone()[0]
        folders = self.job_folder_ids()
        return max(int(in_rows), int(sequence or 0), max(folders, default=0))

    def counts(self) -> dict[str, int]:
        with self._translate():
            found = dict(self._db.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())
        return {state: found.get(state, 0) for state in STATES}

    def idle(self, capacity: int | None = None) -> bool:
        """Nothing running and nothing queued (that fits in `capacity` devices): a worker started with
        `--until-empty` may stop. A running job counts, since its worker may be lost and it taken over."""
        with self._translate():
            running, queued = self._db.execute(
                "SELECT count(*) FILTER (WHERE state = 'running'), "
                "count(*) FILTER (WHERE state = 'queued' AND gpus <= ?) FROM jobs WHERE backend = 'local'",
                (capacity if capacity is not None else 1 << 30,)).fetchone()
        return running == 0 and queued == 0

    def queued_beyond(self, capacity: int) -> int:
        """How many queued jobs ask for more devices than `capacity`."""
        with self._translate():
            return self._db.execute("SELECT count(*) FROM jobs WHERE backend = 'local' AND state = 'queued' AND gpus > ?",
                                    (capacity,)).fetchone()[0]

    # -- submitting and user actions -----------------------------------------------------------

    def submit(self, kind: str, target: str, spec: dict[str, Any], *, gpus: int = 1,
               time_limit_s: float | None = None, memory_limit_gb: float | None = None,
               backend: str = "local") -> int:
        if kind not in KINDS:
            raise ServiceError(f"job kind {kind!r} unknown; expected one of {', '.join(KINDS)}")
        if backend not in BACKENDS:
            raise ServiceError(f"backend {backend!r} unknown; expected one of {', '.join(BACKENDS)}")
        if gpus < 1:
            raise ServiceError(f"a job needs at least 1 device, got gpus={gpus}")
        for name, value in (("time limit", time_limit_s), ("memory limit", memory_limit_gb)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ServiceError(f"{name} must be positive and finite, got {value}")
        with self._transaction() as db:
            spec = check_job_spec(kind, spec)
            job_id = self.max_id() + 1
            submitted = time.time()
            if self.jobs_dir is not None:
                self._create_job_folder(job_id, {"kind": kind, "target": target, "spec": spec, "gpus": gpus,
                                                 "time_limit_s": time_limit_s, "memory_limit_gb": memory_limit_gb,
                                                 "submitted": submitted, "backend": backend})
            db.execute(
                "INSERT INTO jobs (id, kind, target, spec, gpus, time_limit_s, memory_limit_gb, state, submitted, backend) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?)",
                (job_id, kind, target, job_spec_text(kind, spec), gpus, time_limit_s, memory_limit_gb, submitted,
                 backend))
            return job_id

    def _create_job_folder(self, job_id: int, request: dict[str, Any]) -> None:
        """The job's folder, made here and only here (never adopted: it must not exist yet), with the
        record `atzoo runner recover` rebuilds the job from."""
        assert self.jobs_dir is not None
        folder = self.jobs_dir / str(job_id)
        try:
            folder.mkdir(parents=False)
        except FileExistsError:
            raise ServiceError(f"job folder {folder} already exists although the queue never handed out id "
                               f"{job_id}; it is left untouched. {RECOVER_HINT}") from None
        write_json(folder / JOB_RECORD, {"format": JOB_RECORD_FORMAT, "runner": self.runner_identity,
                                                "id": job_id, **request})

    def restore(self, record: dict[str, Any], *, state: str, attempts: int, reason: str | None) -> None:
        """Put a job back under its own id from its folder's record (`atzoo runner recover`)."""
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "INSERT INTO jobs (id, kind, target, spec, gpus, time_limit_s, memory_limit_gb, state, attempts, "
                "submitted, finished, reason, backend) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record["id"], record["kind"], record["target"], job_spec_text(record["kind"], record["spec"]),
                 record.get("gpus") or 1, record.get("time_limit_s"), record.get("memory_limit_gb"), state, attempts,
                 record["submitted"], now if state in TERMINAL else None, reason, record.get("backend") or "local"))

    def request_cancel(self, job_id: int) -> Job:
        """A queued job is cancelled at once; a running one is flagged for its worker to stop."""
        with self._transaction() as db:
            job = self._get_in(db, job_id)
            if job.state in TERMINAL:
                raise ServiceError(f"job {job_id} is already {job.state}; nothing to cancel")
            if job.state == "queued":
                db.execute("UPDATE jobs SET state='cancelled', finished=?, reason='cancelled before it started' "
                           "WHERE id=?", (time.time(), job_id))
            else:
                db.execute("UPDATE jobs SET cancel_requested=1 WHERE id=?", (job_id,))
            return self._get_in(db, job_id)

    def retry(self, job_id: int) -> Job:
        """Put a failed or cancelled job back in the queue; its run resumes from its last checkpoint."""
        with self._transaction() as db:
            job = self._get_in(db, job_id)
            if job.state not in ("failed", "cancelled"):
                hint = "; submit it again for a new run" if job.state == "done" else ""
                raise ServiceError(f"job {job_id} is {job.state}; only failed or cancelled jobs can be retried{hint}")
            db.execute("UPDATE jobs SET state='queued', worker=NULL, pid=NULL, heartbeat=NULL, cancel_requested=0, "
                       "started=NULL, finished=NULL, returncode=NULL, reason=NULL, log_tail=NULL, result=NULL "
                       "WHERE id=?", (job_id,))
            return self._get_in(db, job_id)

    @staticmethod
    def _get_in(db: sqlite3.Connection, job_id: int) -> Job:
        row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise ServiceError(f"no job {job_id} in the queue")
        return Job.from_row(row)

    # -- worker side ---------------------------------------------------------------------------

    def claim(self, worker: str, *, capacity: int = 1, stale_after_s: float = 30.0,
              max_attempts: int = 5) -> Claim | None:
        """Take the oldest job this worker can run: a queued one, or a running one whose worker has not
        sent a heartbeat for `stale_after_s` (that worker is taken to be dead). An orphan that already
        used `max_attempts` attempts is failed instead of being started once more."""
        with self._transaction() as db:
            while True:
                now = time.time()
                row = db.execute(
                    "SELECT * FROM jobs WHERE backend = 'local' AND gpus <= ? AND (state = 'queued' OR (state = 'running' AND "
                    "(heartbeat IS NULL OR heartbeat < ?))) ORDER BY id LIMIT 1",
                    (capacity, now - stale_after_s)).fetchone()
                if row is None:
                    return None
                problem = row_problem(dict(row))
                if problem:
                    db.execute("UPDATE jobs SET state='failed', finished=?, reason=? WHERE id=?",
                               (now, f"its queue row is damaged ({problem})", row["id"]))
                    continue
                job = Job.from_row(row)
                previous = job.worker if job.state == "running" else None
                if previous is not None and job.attempts >= max_attempts and not job.cancel_requested:
                    db.execute("UPDATE jobs SET state='failed', finished=?, reason=? WHERE id=?",
                               (now, f"abandoned: its worker was lost after {job.attempts} attempts had started "
                                     f"(last worker: {previous})", job.id))
                    continue
                db.execute("UPDATE jobs SET state='running', worker=?, pid=NULL, attempts=attempts+1, heartbeat=?, "
                           "started=COALESCE(started, ?) WHERE id=?", (worker, now, now, job.id))
                return Claim(self._get_in(db, job.id), previous)

    def _fenced(self, job: Job, assignments: str, values: tuple) -> bool:
        with self._transaction() as db:
            cursor = db.execute(f"UPDATE jobs SET {assignments} WHERE id=? AND worker=? AND attempts=? "
                                f"AND state='running'", (*values, job.id, job.worker, job.attempts))
            return cursor.rowcount == 1

    def heartbeat(self, job: Job) -> tuple[bool, bool]:
        """(still ours, cancel requested). Not ours any more: another worker reclaimed the job."""
        with self._transaction() as db:
            cursor = db.execute("UPDATE jobs SET heartbeat=? WHERE id=? AND worker=? AND attempts=? "
                                "AND state='running'", (time.time(), job.id, job.worker, job.attempts))
            if cursor.rowcount != 1:
                return False, False
            flag = db.execute("SELECT cancel_requested FROM jobs WHERE id=?", (job.id,)).fetchone()[0]
            return True, bool(flag)

    def set_pid(self, job: Job, pid: int) -> bool:
        return self._fenced(job, "pid=?, heartbeat=?", (pid, time.time()))

    def finish(self, job: Job, state: str, *, reason: str | None = None, returncode: int | None = None,
               log_tail: str | None = None, result: dict[str, Any] | None = None) -> bool:
        """End the attempt in a terminal state; False if the job is no longer this attempt's."""
        if state not in TERMINAL:
            raise ValueError(f"finish() takes a terminal state, got {state!r}")
        return self._fenced(job, "state=?, finished=?, reason=?, returncode=?, log_tail=?, result=?, pid=NULL",
                            (state, time.time(), reason, returncode, log_tail,
                             dump_json(result, "job result").strip() if result is not None else None))

    def release(self, job: Job, reason: str) -> bool:
        """Hand a running job back to the queue (its worker is shutting down); it resumes later."""
        return self._fenced(job, "state='queued', worker=NULL, pid=NULL, heartbeat=NULL, reason=?", (reason,))


def open_queue(runner: RunnerDir) -> Queue:
    """The queue of a runner directory, created on first use. A missing or empty queue file beside
    existing job folders is refused (a fresh queue would hand out their ids again), and so is the queue
    file of another runner directory."""
    jobs = runner.path / "jobs"
    if not runner.queue_file.exists() and jobs.is_dir() and any(jobs.iterdir()):
        raise ServiceError(f"{runner.queue_file} is missing although {jobs} holds jobs; restore the queue "
                           f"file rather than starting an empty one, or {RECOVER_HINT}")
    return Queue.open(runner.queue_file, create=True, jobs_dir=jobs, runner_identity=runner.identity)
