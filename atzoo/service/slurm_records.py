"""The Slurm part of a runner directory's record: tables `slurm_jobs` (resolved options, the commands, the
current Slurm job id, the scheduler's last state, node, elapsed) and `slurm_history` (every submission,
state change, cancel and retry) in the queue file, beside the `jobs` rows of backend `slurm`."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from atzoo.errors import ServiceError
from atzoo.service.jobs import read_events
from atzoo.service.queue import TERMINAL
from atzoo.service.runnerdir import RunnerDir
from atzoo.service.slurm_options import SlurmOptions

SUBMISSION_STALE_S = 300.0
SCHEDULER_PREFIX = "scheduler "

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


@dataclass(frozen=True)
class SlurmRecord:
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
    def from_row(cls, row: sqlite3.Row) -> SlurmRecord:
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

    def get(self, job_id: int) -> SlurmRecord | None:
        if not self.exists:
            return None
        row = self._db.execute("SELECT * FROM slurm_jobs WHERE job_id = ?", (job_id,)).fetchone()
        return SlurmRecord.from_row(row) if row else None

    def all(self) -> dict[int, SlurmRecord]:
        if not self.exists:
            return {}
        return {row["job_id"]: SlurmRecord.from_row(row) for row in self._db.execute("SELECT * FROM slurm_jobs")}

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
