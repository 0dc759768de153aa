"""Central housekeeping (issue 17 point 4): the retention policy of processed_messages and the audit trail.

Policy (docs/ops/housekeeping.md):
* processed_messages (the ingestor's idempotency claims) older than MES_PROCESSED_MESSAGES_KEEP_DAYS (400) are
  archived, then deleted: per batch, in one transaction, the rows are locked, written to a gzip JSON-lines file,
  the file is fsynced, read back and compared row by row, checksummed, and only then are exactly those ids
  deleted. Any failure before the commit rolls the delete back: nothing is dropped unarchived.
* Exactly-once after the delete: a message can only be replayed by a station whose outbox still holds it. The
  cutoff is therefore held back to the oldest record any station reports (station_states: outbox not empty or
  station offline); completions also keep their second key for ever (process_results.source_sha256 is unique).
* With a store (`--copy-to-store`: the firmware's storage, local disk or S3, MES_FIRMWARE_*) each verified file
  and its checksum are also put there under `archive/processed_messages/` and read back (SHA-256 compared)
  before the delete.
* audit_log is kept for ever (append-only, hash-chained; the law asks ≥ 3 years): only measured here.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from cloud_api.adapters import housekeeping_sql as sql
from cloud_api.adapters.database import Database
from cloud_api.adapters.housekeeping_sql import StationHold, TableFacts
from cloud_api.firmware.storage import FirmwareStorage
from cloud_api.services.housekeeping_archive import ArchiveFile, ArchiveNotVerified, discard, write_archive

DEFAULT_KEEP_DAYS = 400
BATCH_ROWS = 50_000
STORE_FOLDER = "archive/processed_messages"


class DeleteMismatch(Exception):
    """The delete did not remove exactly the archived rows: the transaction is rolled back."""


@dataclass(frozen=True, slots=True)
class Cutoff:
    at: datetime  # rows received before this may go
    by_policy: datetime  # now − keep_days
    held_by: StationHold | None  # the station whose outbox holds the cutoff back, if any


def effective_cutoff(now: datetime, keep_days: float, holds: list[StationHold]) -> Cutoff:
    """now − keep_days, or earlier: never past the oldest record a station may still replay."""
    by_policy = now - timedelta(days=keep_days)
    oldest = min(holds, key=lambda hold: hold.oldest_record_at, default=None)
    if oldest is not None and oldest.oldest_record_at < by_policy:
        return Cutoff(oldest.oldest_record_at, by_policy, oldest)
    return Cutoff(by_policy, by_policy, None)


@dataclass(slots=True)
class RetentionRun:
    cutoff: Cutoff
    dry_run: bool
    rows_due: int = 0
    oldest_due: datetime | None = None
    rows_deleted: int = 0
    files: list[ArchiveFile] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class HousekeepingReport:
    cutoff: Cutoff
    keep_days: float
    processed: TableFacts
    rows_due: int
    oldest_due: datetime | None
    audit: TableFacts
    holds: list[StationHold]

    @property
    def audit_rows_per_year(self) -> int:
        """The last 30 days' pace, per year (the trail's growth; it is never pruned)."""
        return round(self.audit.rows_last_30_days * 365 / 30)

    @property
    def audit_bytes_per_row(self) -> float:
        return self.audit.total_bytes / self.audit.rows if self.audit.rows else 0.0


async def _cutoff(db: Database, keep_days: float) -> tuple[Cutoff, list[StationHold]]:
    async with db.transaction() as conn:
        holds = await sql.station_holds(conn)
    return effective_cutoff(db.now(), keep_days, holds), holds


async def report(db: Database, keep_days: float = DEFAULT_KEEP_DAYS) -> HousekeepingReport:
    """Sizes, ages and what `run` would archive now; changes nothing."""
    cutoff, holds = await _cutoff(db, keep_days)
    async with db.transaction() as conn:
        processed = await sql.table_facts(conn, "processed_messages")
        due, oldest = await sql.count_due(conn, cutoff.at)
        audit = await sql.table_facts(conn, "audit_log")
    return HousekeepingReport(cutoff, keep_days, processed, due, oldest, audit, holds)


async def copy_to_store(store: FirmwareStorage, archived: ArchiveFile) -> str:
    """Put the file and its checksum in the store and read the file back; its key. Raises unless identical."""
    key = f"{STORE_FOLDER}/{archived.path.name}"
    checksum = archived.path.with_name(archived.path.name + ".sha256")
    await store.put(key, await asyncio.to_thread(archived.path.read_bytes))
    await store.put(key + ".sha256", await asyncio.to_thread(checksum.read_bytes))
    if hashlib.sha256(await store.get(key)).hexdigest() != archived.sha256:
        raise ArchiveNotVerified(f"{key}: the store gave back other bytes than were put")
    return key


async def _archive_batch(
    db: Database, archive_dir: Path, cutoff: datetime, batch_rows: int, store: FirmwareStorage | None
) -> ArchiveFile | None:
    """One transaction: lock a batch, archive it durably and verified, delete exactly it. None: nothing left."""
    async with db.transaction() as conn:
        rows = await sql.lock_due(conn, cutoff, batch_rows)
        if not rows:
            return None
        archived = await asyncio.to_thread(write_archive, archive_dir, rows)
        try:
            if store is not None:
                await copy_to_store(store, archived)
            deleted = await sql.delete_archived(conn, [row.message_id for row in rows], cutoff)
            if deleted != len(rows):
                raise DeleteMismatch(f"{deleted} rows deleted, {len(rows)} archived; rolled back")
        except BaseException:
            discard(archived)  # the rows stay: no second copy of them in the archive
            raise
    return archived


async def archive_processed_messages(
    db: Database,
    archive_dir: Path,
    keep_days: float = DEFAULT_KEEP_DAYS,
    dry_run: bool = False,
    batch_rows: int = BATCH_ROWS,
    store: FirmwareStorage | None = None,
) -> RetentionRun:
    """Archive and delete every processed_messages row past the cutoff, batch by batch (dry run: count only)."""
    cutoff, _ = await _cutoff(db, keep_days)
    run = RetentionRun(cutoff, dry_run)
    async with db.transaction() as conn:
        run.rows_due, run.oldest_due = await sql.count_due(conn, cutoff.at)
    if dry_run:
        return run
    while (archived := await _archive_batch(db, archive_dir, cutoff.at, batch_rows, store)) is not None:
        run.files.append(archived)
        run.rows_deleted += archived.rows
    return run
