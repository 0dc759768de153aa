"""Durable outbox of measurement batches (`measurements.sqlite3` in the work directory): the same guarantees as
the completion outbox, for curves and gauge readings.

A curve file is admitted as one transaction: its row (name + SHA-256) and every batch envelope with its message
id minted once. Batches are sent, answered and kept until the file they came from is moved (completed/ or error/),
so a crash anywhere repeats at most a send with the same id (the centre answers "duplicate") or a move. Gauge
batches have no file: their row is deleted once answered. Blocking SQLite runs on one dedicated thread.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from edge_gateway.outbox_store import connect

T = TypeVar("T")
MEASUREMENT_OUTBOX_FILE = "measurements.sqlite3"
SCHEMA = """
CREATE TABLE IF NOT EXISTS curve_files (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    file_name  TEXT    NOT NULL,
    sha256     TEXT    NOT NULL,
    created_at REAL    NOT NULL,
    UNIQUE (file_name, sha256)
);
CREATE TABLE IF NOT EXISTS batches (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,  -- commit order; never reused
    message_id      TEXT    NOT NULL UNIQUE,            -- minted once, before the first publish
    file_id         INTEGER REFERENCES curve_files(id), -- NULL: a gauge batch
    samples         INTEGER NOT NULL,
    size            INTEGER NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'answered')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    server_failures INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL    NOT NULL DEFAULT 0,
    created_at      REAL    NOT NULL,
    outcome         TEXT,
    http_status     INTEGER,
    reply_body      TEXT,
    envelope        TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_due ON batches (state, next_attempt_at, id);
CREATE INDEX IF NOT EXISTS batches_file ON batches (file_id);
"""


@dataclass(frozen=True, slots=True)
class NewBatch:
    message_id: str
    samples: int
    envelope: str


@dataclass(frozen=True, slots=True)
class DueBatch:
    batch_id: int
    message_id: str
    file_id: int | None
    envelope: str
    attempts: int
    server_failures: int
    created_at: float


@dataclass(frozen=True, slots=True)
class FileAnswers:
    """A curve file whose every batch is answered: the first refusal decides error/ (None: completed/)."""

    file_id: int
    file_name: str
    sha256: str
    rejected: tuple[str, int, dict[str, Any]] | None  # message id, http status, reply body
    duplicates: int
    batches: int


class MeasurementStore:
    """Owns the connection (one thread only)."""

    def __init__(self, path: Path) -> None:
        self._conn = connect(path)
        self._conn.executescript(SCHEMA)
        row = self._conn.execute("SELECT coalesce(max(id), 0), count(*), coalesce(sum(size), 0) FROM batches")
        self.boot_last_id, self.depth, self.bytes = (int(v) for v in row.fetchone())

    def close(self) -> None:
        self._conn.close()

    def _transaction(self, work: Callable[[], T]) -> T:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            result = work()
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        return result

    def file_names(self) -> list[str]:
        return [str(r[0]) for r in self._conn.execute("SELECT file_name FROM curve_files")]

    def admit(self, file_name: str | None, sha256: str | None, batches: Sequence[NewBatch], now: float) -> bool:
        """Commit a file's batches (all or none); False when that name and content are already here."""

        def work() -> bool:
            file_id = None
            if file_name is not None:
                known = self._conn.execute(
                    "SELECT id FROM curve_files WHERE file_name = ? AND sha256 = ?", (file_name, sha256)
                ).fetchone()
                if known is not None:
                    return False
                cursor = self._conn.execute(
                    "INSERT INTO curve_files (file_name, sha256, created_at) VALUES (?, ?, ?)",
                    (file_name, sha256, now),
                )
                file_id = cursor.lastrowid
            rows = [(b.message_id, file_id, b.samples, len(b.envelope), b.envelope, now) for b in batches]
            self._conn.executemany(
                "INSERT INTO batches (message_id, file_id, samples, size, envelope, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            self.depth += len(rows)
            self.bytes += sum(r[3] for r in rows)
            return True

        return self._transaction(work)

    def due(self, now: float, limit: int, in_flight: Sequence[int]) -> tuple[list[DueBatch], float | None]:
        rows = self._conn.execute(
            "SELECT id, message_id, file_id, envelope, attempts, server_failures, created_at FROM batches "
            "WHERE state = 'queued' AND next_attempt_at <= ? AND id NOT IN (SELECT value FROM json_each(?)) "
            "ORDER BY next_attempt_at, id LIMIT ?",
            (now, json.dumps(list(in_flight)), limit),
        ).fetchall()
        nxt = self._conn.execute(
            "SELECT min(next_attempt_at) FROM batches WHERE state = 'queued' AND next_attempt_at > ?", (now,)
        ).fetchone()
        batches = [DueBatch(int(r[0]), str(r[1]), r[2], str(r[3]), int(r[4]), int(r[5]), float(r[6])) for r in rows]
        return batches, (float(nxt[0]) if nxt and nxt[0] is not None else None)

    def fail(self, batch_id: int, next_attempt_at: float, server_failure: bool) -> None:
        self._transaction(
            lambda: self._conn.execute(
                "UPDATE batches SET attempts = attempts + 1, server_failures = server_failures + ?, "
                "next_attempt_at = ? WHERE id = ?",
                (int(server_failure), next_attempt_at, batch_id),
            )
        )

    def make_due(self, now: float) -> None:
        self._transaction(
            lambda: self._conn.execute(
                "UPDATE batches SET next_attempt_at = ? WHERE state = 'queued' AND next_attempt_at > ?", (now, now)
            )
        )

    def answer(self, batch: DueBatch, outcome: str, http_status: int, body: dict[str, Any]) -> FileAnswers | None:
        """Store the answer; a gauge batch is done with (deleted), a file's last answer returns the file."""

        def work() -> FileAnswers | None:
            if batch.file_id is None:
                self._delete_batches("id = ?", batch.batch_id)
                return None
            self._conn.execute(
                "UPDATE batches SET state = 'answered', attempts = attempts + 1, outcome = ?, http_status = ?, "
                "reply_body = ? WHERE id = ?",
                (outcome, http_status, json.dumps(body, ensure_ascii=False), batch.batch_id),
            )
            return self._file_if_answered(batch.file_id)

        return self._transaction(work)

    def oldest_created_at(self) -> float | None:
        """When the oldest batch still here was committed (/metrics); None when empty. The primary key orders it."""
        row = self._conn.execute("SELECT created_at FROM batches ORDER BY id LIMIT 1").fetchone()
        return None if row is None else float(row[0])

    def answered_files(self) -> list[FileAnswers]:
        """Files whose every batch was answered before a restart (their move is still due)."""
        ids = [int(r[0]) for r in self._conn.execute("SELECT id FROM curve_files ORDER BY id")]
        found = (self._file_if_answered(i) for i in ids)
        return [f for f in found if f is not None]

    def forget_file(self, file_id: int) -> None:
        """The file is moved (or gone): its rows go."""

        def work() -> None:
            self._delete_batches("file_id = ?", file_id)
            self._conn.execute("DELETE FROM curve_files WHERE id = ?", (file_id,))

        self._transaction(work)

    def _delete_batches(self, where: str, key: int) -> None:
        row = self._conn.execute(
            f"SELECT count(*), coalesce(sum(size), 0) FROM batches WHERE {where}", (key,)
        ).fetchone()
        self._conn.execute(f"DELETE FROM batches WHERE {where}", (key,))
        self.depth -= int(row[0])
        self.bytes -= int(row[1])

    def _file_if_answered(self, file_id: int) -> FileAnswers | None:
        head = self._conn.execute("SELECT file_name, sha256 FROM curve_files WHERE id = ?", (file_id,)).fetchone()
        counts = self._conn.execute(
            "SELECT count(*), coalesce(sum(state = 'queued'), 0), coalesce(sum(outcome = 'duplicate'), 0) "
            "FROM batches WHERE file_id = ?",
            (file_id,),
        ).fetchone()
        if head is None or int(counts[1]) > 0:
            return None
        refused = self._conn.execute(
            "SELECT message_id, http_status, reply_body FROM batches WHERE file_id = ? AND outcome = 'rejected' "
            "ORDER BY id LIMIT 1",
            (file_id,),
        ).fetchone()
        rejected = None if refused is None else (str(refused[0]), int(refused[1]), json.loads(refused[2] or "{}"))
        return FileAnswers(file_id, str(head[0]), str(head[1]), rejected, int(counts[2]), int(counts[0]))


class MeasurementOutbox:
    """Async face of MeasurementStore: every call on one thread, in submission order."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="measurement-outbox")
        self._store: MeasurementStore | None = None

    @property
    def depth(self) -> int:
        return self._store.depth if self._store else 0

    @property
    def bytes(self) -> int:
        return self._store.bytes if self._store else 0

    @property
    def boot_last_id(self) -> int:
        return self._store.boot_last_id if self._store else 0

    @property
    def full(self) -> bool:
        return self.bytes >= self.max_bytes

    async def open(self) -> None:
        if self._store is None:
            self._store = await self._call(MeasurementStore, self.path)

    async def close(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            await self._call(store.close)
        self._executor.shutdown(wait=False)

    def store(self) -> MeasurementStore:
        if self._store is None:
            raise sqlite3.ProgrammingError(f"measurement outbox {self.path} is not open")
        return self._store

    async def run(self, op: Callable[[MeasurementStore], T]) -> T:
        return await self._call(lambda: op(self.store()))

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
