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
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Iterator

from atzoo.errors import ServiceError
from atzoo.formats.jobspec import job_spec_text, parse_job_spec
from atzoo.formats.jsonfile import dump_json, parse_json
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
"""
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
        values = dict(row)
        values["spec"] = parse_job_spec(values["kind"], values["spec"], f"job {values['id']}'s spec")
        values["result"] = parse_json(values["result"], f"job {values['id']}'s result") if values["result"] else None
        values["cancel_requested"] = bool(values["cancel_requested"])
        return cls(**values)


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

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, *, create: bool = False, busy_timeout_s: float = 30.0) -> Queue:
        """Open (with `create`, make) the queue file; anything that is not an atzoo queue is refused."""
        path = Path(path)
        if not path.exists() and not create:
            raise ServiceError(f"queue file {path} does not exist")
        try:
            connection = sqlite3.connect(str(path), timeout=busy_timeout_s, isolation_level=None,
                                         check_same_thread=False)
        except sqlite3.Error as error:
            raise ServiceError(f"queue file {path} cannot be opened: {error}") from None
        connection.row_factory = sqlite3.Row
        queue = cls(path, connection)
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
                self._create_schema()
                return
            check = self._db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise ServiceError(f"queue file {self.path} is damaged ({check}); restore it from a backup")
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

    def _create_schema(self) -> None:
        with self._transaction() as db:
            if db.execute("SELECT count(*) FROM sqlite_master WHERE name='schema_version'").fetchone()[0]:
                return
            for statement in filter(str.strip, SCHEMA.split(";")):
                db.execute(statement)
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))

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
                               f"not a queue. The jobs/ folder beside it still holds every job's log and run") \
                from None

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
        with self._translate():
            return [Job.from_row(row) for row in self._db.execute("SELECT * FROM jobs ORDER BY id")]

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
            cursor = db.execute(
                "INSERT INTO jobs (kind, target, spec, gpus, time_limit_s, memory_limit_gb, state, submitted, backend) "
                "VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?)",
                (kind, target, job_spec_text(kind, spec), gpus, time_limit_s, memory_limit_gb, time.time(), backend))
            assert cursor.lastrowid is not None, "an INSERT always sets lastrowid"
            return cursor.lastrowid

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
    """The queue of a runner directory, created on first use. A missing queue file beside existing job
    folders is refused: a fresh queue would hand out their ids again."""
    jobs = runner.path / "jobs"
    if not runner.queue_file.exists() and jobs.is_dir() and any(jobs.iterdir()):
        raise ServiceError(f"{runner.queue_file} is missing although {jobs} holds jobs; restore the queue "
                           f"file rather than starting an empty one")
    return Queue.open(runner.queue_file, create=True)
