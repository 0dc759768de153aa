"""The print queue's SQLite file: jobs per printer in arrival order, results to report, last printer states."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from edge_gateway.outbox_store import connect
from mes_contracts.labels import PrintJob

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,  -- commit order = arrival order: FIFO per printer
    job_id        TEXT    NOT NULL UNIQUE,            -- a redelivered or re-sent job is recognised, never reprinted
    printer_id    TEXT    NOT NULL,
    mode          TEXT    NOT NULL,
    state         TEXT    NOT NULL DEFAULT 'queued'
                  CHECK (state IN ('queued', 'printing', 'printed', 'failed', 'uncertain')),
    received_at   REAL    NOT NULL,                   -- Unix seconds
    attempts      INTEGER NOT NULL DEFAULT 0,
    waiting_state TEXT,                               -- printer state of this job's last WAITING result
    finished_at   REAL,
    job           TEXT    NOT NULL                    -- the PrintJob JSON; its program is blanked when finished
);
CREATE INDEX IF NOT EXISTS jobs_open ON jobs (printer_id, id) WHERE state IN ('queued', 'printing');
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS results (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,    -- publication order
    message_id  TEXT    NOT NULL UNIQUE,              -- minted once: the centre de-duplicates re-publications
    job_id      TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    created_at  REAL    NOT NULL,
    reported    INTEGER NOT NULL DEFAULT 0,           -- 1 once the broker acknowledged the publication
    reported_at REAL,
    envelope    TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS results_unreported ON results (id) WHERE reported = 0;
CREATE TABLE IF NOT EXISTS printers (
    printer_id        TEXT PRIMARY KEY,
    state             TEXT,                           -- what the last attempt found
    detail            TEXT,
    updated_at        REAL,
    last_error_code   TEXT,                           -- the last fault, kept after the printer recovered
    last_error_detail TEXT,
    last_error_at     REAL
);
"""
OPEN_STATES = ("queued", "printing")


class JobState(StrEnum):
    QUEUED = "queued"
    PRINTING = "printing"  # handed to the printer; a crash here leaves it 'uncertain' (never reprinted by itself)
    PRINTED = "printed"
    FAILED = "failed"
    UNCERTAIN = "uncertain"


@dataclass(frozen=True, slots=True)
class StoredJob:
    row_id: int
    job: PrintJob
    state: JobState
    waiting_state: str | None
    attempts: int


@dataclass(frozen=True, slots=True)
class NewResult:
    message_id: str
    job_id: str
    status: str
    envelope: str
    created_at: float


@dataclass(frozen=True, slots=True)
class PrinterSeen:
    printer_id: str
    state: str
    error_code: str | None
    detail: str
    at: float


@dataclass(frozen=True, slots=True)
class Unreported:
    row_id: int
    message_id: str
    envelope: str


def _job(row: Any) -> StoredJob:
    return StoredJob(int(row[0]), PrintJob.model_validate_json(row[1]), JobState(row[2]), row[3], int(row[4]))


def read_summary(conn: sqlite3.Connection) -> dict[str, Any]:
    """Per printer: jobs waiting, whether one is being printed, last state and error; results not yet reported."""
    printers: dict[str, dict[str, Any]] = {}
    for printer_id, state, detail, updated_at, code, error_detail, error_at in conn.execute(
        "SELECT printer_id, state, detail, updated_at, last_error_code, last_error_detail, last_error_at FROM printers"
    ):
        last_error = {"code": code, "detail": error_detail, "at": error_at} if code else None
        printers[printer_id] = {
            "waiting": 0,
            "printing": False,
            "state": state,
            "detail": detail,
            "updated_at": updated_at,
            "last_error": last_error,
        }
    for printer_id, state, count in conn.execute(
        "SELECT printer_id, state, count(*) FROM jobs WHERE state IN ('queued', 'printing') GROUP BY printer_id, state"
    ):
        entry = printers.setdefault(
            printer_id,
            {"waiting": 0, "printing": False, "state": None, "detail": None, "updated_at": None, "last_error": None},
        )
        entry["waiting"] += int(count)
        entry["printing"] = entry["printing"] or state == JobState.PRINTING
    unreported = conn.execute("SELECT count(*) FROM results WHERE reported = 0").fetchone()[0]
    return {"printers": printers, "unreported_results": int(unreported)}


class PrintQueueStore:
    """Owns the connection; every method is one transaction (committed with an fsync before it returns)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = connect(path)
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            self._conn.close()
            raise RuntimeError(f"print queue {path} has schema {version}; this gateway knows {SCHEMA_VERSION}")
        self._conn.executescript(SCHEMA)
        self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self._conn.close()

    def _tx(self, statements: Iterable[tuple[str, tuple[Any, ...]]]) -> list[int]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            counts = [self._conn.execute(sql, args).rowcount for sql, args in statements]
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        return counts

    # -- writes ---------------------------------------------------------------------------------------------

    def accept(self, job: PrintJob, received_at: float) -> bool:
        """Commit a new job; False when its job_id is already known (redelivery, re-send)."""
        (count,) = self._tx(
            [
                (
                    "INSERT INTO jobs (job_id, printer_id, mode, received_at, job) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (job_id) DO NOTHING",
                    (str(job.job_id), job.printer.printer_id, job.mode.value, received_at, job.model_dump_json()),
                )
            ]
        )
        return count == 1

    def mark_printing(self, row_id: int) -> None:
        self._tx([("UPDATE jobs SET state = 'printing', attempts = attempts + 1 WHERE id = ?", (row_id,))])

    def finish(
        self, row_id: int, state: JobState, result: NewResult | None, seen: PrinterSeen | None, at: float
    ) -> None:
        """Close a job with its result (and what the printer said) in one transaction."""
        work = [
            (
                "UPDATE jobs SET state = ?, finished_at = ?, job = json_set(job, '$.program', '') WHERE id = ?",
                (state.value, at, row_id),
            )
        ]
        self._tx([*work, *self._result(result), *self._seen(seen)])

    def requeue(self, row_id: int, waiting_state: str, result: NewResult | None, seen: PrinterSeen) -> None:
        """A QUEUED job the printer could not take stays at the head of its queue."""
        work = [("UPDATE jobs SET state = 'queued', waiting_state = ? WHERE id = ?", (waiting_state, row_id))]
        self._tx([*work, *self._result(result), *self._seen(seen)])

    def mark_reported(self, row_ids: list[int], at: float) -> None:
        if row_ids:
            self._tx([("UPDATE results SET reported = 1, reported_at = ? WHERE id = ?", (at, rid)) for rid in row_ids])

    def purge(self, before: float) -> tuple[int, int]:
        """Forget finished jobs and reported results older than `before` (a job re-sent after that prints again)."""
        jobs, results = self._tx(
            [
                ("DELETE FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?", (before,)),
                ("DELETE FROM results WHERE reported = 1 AND created_at < ?", (before,)),
            ]
        )
        return jobs, results

    @staticmethod
    def _result(result: NewResult | None) -> list[tuple[str, tuple[Any, ...]]]:
        if result is None:
            return []
        return [
            (
                "INSERT INTO results (message_id, job_id, status, envelope, created_at) VALUES (?, ?, ?, ?, ?)",
                (result.message_id, result.job_id, result.status, result.envelope, result.created_at),
            )
        ]

    @staticmethod
    def _seen(seen: PrinterSeen | None) -> list[tuple[str, tuple[Any, ...]]]:
        if seen is None:
            return []
        detail = seen.detail[:2000]
        error = (seen.error_code, detail, seen.at) if seen.error_code else (None, None, None)
        return [
            (
                "INSERT INTO printers (printer_id, state, detail, updated_at, last_error_code, last_error_detail, "
                "last_error_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (printer_id) DO UPDATE SET "
                "state = excluded.state, detail = excluded.detail, updated_at = excluded.updated_at, "
                "last_error_code = coalesce(excluded.last_error_code, printers.last_error_code), "
                "last_error_detail = coalesce(excluded.last_error_detail, printers.last_error_detail), "
                "last_error_at = coalesce(excluded.last_error_at, printers.last_error_at)",
                (seen.printer_id, seen.state, detail, seen.at, *error),
            )
        ]

    # -- reads ----------------------------------------------------------------------------------------------

    def head(self, printer_id: str) -> StoredJob | None:
        """The oldest open job of a printer: the only one its worker may print next."""
        row = self._conn.execute(
            "SELECT id, job, state, waiting_state, attempts FROM jobs "
            "WHERE printer_id = ? AND state IN ('queued', 'printing') ORDER BY id LIMIT 1",
            (printer_id,),
        ).fetchone()
        return None if row is None else _job(row)

    def immediate_behind(self, printer_id: str, head_row_id: int) -> list[StoredJob]:
        """IMMEDIATE jobs queued behind a head that waits for the printer (a person waits for each)."""
        rows = self._conn.execute(
            "SELECT id, job, state, waiting_state, attempts FROM jobs WHERE printer_id = ? AND state = 'queued' "
            "AND mode = 'immediate' AND id > ? ORDER BY id",
            (printer_id, head_row_id),
        ).fetchall()
        return [_job(r) for r in rows]

    def interrupted(self) -> list[StoredJob]:
        """Jobs that were being printed when the gateway stopped without finishing them."""
        rows = self._conn.execute(
            "SELECT id, job, state, waiting_state, attempts FROM jobs WHERE state = 'printing' ORDER BY id"
        ).fetchall()
        return [_job(r) for r in rows]

    def open_printers(self) -> list[str]:
        return [
            str(r[0])
            for r in self._conn.execute("SELECT DISTINCT printer_id FROM jobs WHERE state IN ('queued', 'printing')")
        ]

    def printer_state(self, printer_id: str) -> str | None:
        row = self._conn.execute("SELECT state FROM printers WHERE printer_id = ?", (printer_id,)).fetchone()
        return None if row is None else row[0]

    def unreported(self, limit: int) -> list[Unreported]:
        rows = self._conn.execute(
            "SELECT id, message_id, envelope FROM results WHERE reported = 0 ORDER BY id LIMIT ?", (limit,)
        ).fetchall()
        return [Unreported(int(r[0]), str(r[1]), str(r[2])) for r in rows]

    def summary(self) -> dict[str, Any]:
        return read_summary(self._conn)

    def oldest_unreported_at(self) -> float | None:
        """When the oldest result the broker has not acknowledged was made (/metrics); None when all went out."""
        row = self._conn.execute("SELECT created_at FROM results WHERE reported = 0 ORDER BY id LIMIT 1").fetchone()
        return None if row is None else float(row[0])
