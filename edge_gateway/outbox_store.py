"""The outbox's SQLite file: schema, pragmas and statements. Blocking; only ever called from one thread."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 5000
SEQ_KEY = "seq_limit"

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,  -- commit order; never reused
    message_id      TEXT    NOT NULL UNIQUE,            -- UUIDv7 minted once, before the first publish
    file_name       TEXT    NOT NULL,
    sha256          TEXT    NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'answered')),
    size            INTEGER NOT NULL,                   -- len(content) + len(envelope), for the byte bound
    created_at      REAL    NOT NULL,                   -- Unix seconds
    attempts        INTEGER NOT NULL DEFAULT 0,         -- sends whose outcome is known
    server_failures INTEGER NOT NULL DEFAULT 0,         -- 5xx answers from the centre
    next_attempt_at REAL    NOT NULL DEFAULT 0,
    last_error      TEXT,
    outcome         TEXT,                               -- the centre's answer, once state = 'answered'
    http_status     INTEGER,
    answered_at     REAL,
    reply_body      TEXT,
    envelope        TEXT    NOT NULL,                   -- the envelope JSON as first minted (replay false)
    content         BLOB    NOT NULL,                   -- the file's bytes: delivery survives its loss
    UNIQUE (file_name, sha256)
);  -- the large columns last: scans of the small ones never walk overflow pages
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_at, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_NOT_IN_FLIGHT = "id NOT IN (SELECT value FROM json_each(?))"  # one parameter whatever max_in_flight is


class State(StrEnum):
    QUEUED = "queued"  # committed, waiting for (another) delivery
    ANSWERED = "answered"  # the centre's answer is stored; the file's move and the row's deletion are due


class AdmitStatus(StrEnum):
    CREATED = "created"
    EXISTING = "existing"  # same name and content already in the outbox: its record (and id) is reused
    FULL = "full"


@dataclass(frozen=True, slots=True)
class NewRecord:
    message_id: str
    file_name: str
    sha256: str
    content: bytes
    envelope: str
    created_at: float


@dataclass(frozen=True, slots=True)
class Admission:
    status: AdmitStatus
    record_id: int = 0
    message_id: str = ""


@dataclass(frozen=True, slots=True)
class Outbound:
    """A record due for sending: only these rows' envelopes are ever held in memory."""

    record_id: int
    message_id: str
    file_name: str
    sha256: str
    envelope: str
    attempts: int
    server_failures: int
    created_at: float


@dataclass(frozen=True, slots=True)
class Answered:
    """A record whose answer is stored: enough to apply the disposition, no file bytes."""

    record_id: int
    message_id: str
    file_name: str
    sha256: str
    outcome: str
    http_status: int
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Totals:
    depth: int
    bytes: int
    answered: int
    oldest_created_at: float | None


def connect(path: Path, read_only: bool = False) -> sqlite3.Connection:
    """WAL (readers never block the writer) + synchronous=FULL (a commit survives power loss, not just a crash)."""
    if read_only:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    else:
        conn = sqlite3.connect(path, isolation_level=None)  # autocommit; transactions are explicit
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    if not read_only:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            logger.warning("outbox %s: journal mode is %s, not WAL", path, mode)
        conn.execute("PRAGMA synchronous = FULL")
    return conn


def read_totals(conn: sqlite3.Connection) -> Totals:
    depth, size, answered = conn.execute(
        "SELECT count(*), coalesce(sum(size), 0), coalesce(sum(state = 'answered'), 0) FROM outbox"
    ).fetchone()
    oldest = conn.execute("SELECT created_at FROM outbox ORDER BY id LIMIT 1").fetchone()
    return Totals(int(depth), int(size), int(answered), float(oldest[0]) if oldest else None)


class OutboxStore:
    """Owns the connection. Keeps exact depth/bytes so the size bound is checked inside the transaction."""

    def __init__(self, path: Path, max_records: int, max_bytes: int) -> None:
        self._conn = connect(path)
        self._max_records = max_records
        self._max_bytes = max_bytes
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            self._conn.close()
            raise RuntimeError(f"outbox {path} has schema {version}; this gateway knows {SCHEMA_VERSION}")
        self._conn.executescript(SCHEMA)
        self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        totals = read_totals(self._conn)
        self.depth, self.bytes = totals.depth, totals.bytes
        row = self._conn.execute("SELECT max(id) FROM outbox").fetchone()
        seq_row = self._conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        # Rows up to here were committed by an earlier run, which may have published them before it died.
        self.boot_last_id = max(int(row[0] or 0), int(seq_row[0]) if seq_row else 0)

    def close(self) -> None:
        self._conn.close()

    def transaction(self, work: Sequence[Callable[[OutboxStore], T]]) -> list[T]:
        """Run every op in one transaction (one fsync for the whole batch); all or nothing."""
        depth, size = self.depth, self.bytes
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            results = [op(self) for op in work]
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            self.depth, self.bytes = depth, size
            raise
        return results

    # -- writes (inside `transaction`) ---------------------------------------------------------------------

    def admit(self, new: NewRecord) -> Admission:
        known = self._conn.execute(
            "SELECT id, message_id FROM outbox WHERE file_name = ? AND sha256 = ?", (new.file_name, new.sha256)
        ).fetchone()
        if known is not None:
            return Admission(AdmitStatus.EXISTING, int(known[0]), str(known[1]))
        size = len(new.content) + len(new.envelope.encode())
        if self.depth >= self._max_records or self.bytes + size > self._max_bytes:
            return Admission(AdmitStatus.FULL)
        cursor = self._conn.execute(
            "INSERT INTO outbox (message_id, file_name, sha256, content, envelope, size, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (new.message_id, new.file_name, new.sha256, new.content, new.envelope, size, new.created_at),
        )
        self.depth += 1
        self.bytes += size
        return Admission(AdmitStatus.CREATED, int(cursor.lastrowid or 0), new.message_id)

    def admit_many(self, news: Sequence[NewRecord]) -> list[Admission]:
        """Every record of one pickup pass, in order, inside the caller's transaction (one commit for all)."""
        return [self.admit(new) for new in news]

    def fail(self, record_id: int, error: str, next_attempt_at: float, server_failure: bool) -> None:
        self._conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, server_failures = server_failures + ?, "
            "last_error = ?, next_attempt_at = ? WHERE id = ? AND state = 'queued'",
            (int(server_failure), error[:2000], next_attempt_at, record_id),
        )

    def answer(self, record_id: int, outcome: str, http_status: int, body: dict[str, Any], at: float) -> None:
        self._conn.execute(
            "UPDATE outbox SET state = 'answered', attempts = attempts + 1, outcome = ?, http_status = ?, "
            "reply_body = ?, answered_at = ? WHERE id = ?",
            (outcome, http_status, json.dumps(body, ensure_ascii=False), at, record_id),
        )

    def answer_many(self, rows: Sequence[tuple[str, int, str, float, int]]) -> None:
        """Answers gathered in one pass: (outcome, http_status, reply_body JSON, answered_at, id) each."""
        self._conn.executemany(
            "UPDATE outbox SET state = 'answered', attempts = attempts + 1, outcome = ?, http_status = ?, "
            "reply_body = ?, answered_at = ? WHERE id = ?",
            rows,
        )

    def delete(self, record_ids: Iterable[int]) -> None:
        for record_id in record_ids:
            row = self._conn.execute("DELETE FROM outbox WHERE id = ? RETURNING size", (record_id,)).fetchone()
            if row is not None:
                self.depth -= 1
                self.bytes -= int(row[0])

    def make_due(self, now: float) -> int:
        """Every queued record due now (after an outage the backoffs of the failures during it are moot)."""
        return self._conn.execute(
            "UPDATE outbox SET next_attempt_at = ? WHERE state = 'queued' AND next_attempt_at > ?", (now, now)
        ).rowcount

    def reserve_seq(self, block: int) -> tuple[int, int]:
        """Hand out envelope seq numbers [start, limit); the limit is stored before any of them is used."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (SEQ_KEY,)).fetchone()
        start = int(row[0]) if row else 0
        self._conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (SEQ_KEY, start + block),
        )
        return start, start + block

    # -- reads ---------------------------------------------------------------------------------------------

    def due(self, now: float, limit: int, in_flight: Iterable[int]) -> tuple[list[Outbound], float | None]:
        """Up to `limit` queued records due at `now` (oldest first) and when the next other one falls due."""
        excluded = json.dumps(sorted(in_flight))
        rows = self._conn.execute(
            "SELECT id, message_id, file_name, sha256, envelope, attempts, server_failures, created_at "
            f"FROM outbox WHERE state = 'queued' AND next_attempt_at <= ? AND {_NOT_IN_FLIGHT} "
            "ORDER BY next_attempt_at, id LIMIT ?",
            (now, excluded, limit),
        ).fetchall()
        records = [
            Outbound(int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), int(r[5]), int(r[6]), float(r[7]))
            for r in rows
        ]
        taken = json.dumps(sorted({*json.loads(excluded), *(r.record_id for r in records)}))
        nxt = self._conn.execute(
            f"SELECT next_attempt_at FROM outbox WHERE state = 'queued' AND {_NOT_IN_FLIGHT} "
            "ORDER BY next_attempt_at, id LIMIT 1",
            (taken,),
        ).fetchone()
        return records, (float(nxt[0]) if nxt else None)

    def answered(self) -> list[Answered]:
        rows = self._conn.execute(
            "SELECT id, message_id, file_name, sha256, outcome, http_status, reply_body "
            "FROM outbox WHERE state = 'answered' ORDER BY id"
        ).fetchall()
        return [
            Answered(int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), int(r[5]), json.loads(r[6] or "{}"))
            for r in rows
        ]

    def names(self) -> list[str]:
        return [str(r[0]) for r in self._conn.execute("SELECT file_name FROM outbox")]

    def totals(self) -> Totals:
        """Cheap: depth and bytes are kept exact in memory, the rest comes from indexes."""
        answered = self._conn.execute("SELECT count(*) FROM outbox WHERE state = 'answered'").fetchone()[0]
        oldest = self._conn.execute("SELECT created_at FROM outbox ORDER BY id LIMIT 1").fetchone()
        return Totals(self.depth, self.bytes, int(answered), float(oldest[0]) if oldest else None)
