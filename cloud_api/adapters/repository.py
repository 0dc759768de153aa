"""SQL used by the use cases; every function runs inside the caller's transaction."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.domain.lots import LotStatus


async def lock_lot(conn: AsyncConnection, lot_number: str) -> dict[str, Any] | None:
    """The LOT row, locked until commit so that starts and completions of one LOT serialise."""
    row = await conn.execute(
        text(
            "SELECT l.*, pm.model_code, pm.model_name FROM lots l "
            "JOIN product_models pm ON pm.id = l.product_model_id WHERE l.lot_number = :n FOR UPDATE OF l"
        ),
        {"n": lot_number},
    )
    found = row.mappings().first()
    return dict(found) if found else None


async def find_lot(conn: AsyncConnection, lot_number: str) -> dict[str, Any] | None:
    row = await conn.execute(
        text(
            "SELECT l.*, pm.model_code, pm.model_name FROM lots l "
            "JOIN product_models pm ON pm.id = l.product_model_id WHERE l.lot_number = :n"
        ),
        {"n": lot_number},
    )
    found = row.mappings().first()
    return dict(found) if found else None


async def set_lot_status(
    conn: AsyncConnection,
    lot_id: int,
    old: LotStatus | None,
    new: LotStatus,
    actor: str,
    reason: str | None = None,
    message_id: uuid.UUID | None = None,
) -> None:
    """Change the status and record the transition in one round trip."""
    await conn.execute(
        text(
            "WITH changed AS (UPDATE lots SET status = :new, updated_at = now() WHERE id = :lot RETURNING id) "
            "INSERT INTO lot_status_history (lot_id, from_status, to_status, actor, reason, message_id) "
            "SELECT id, :old, :new, :actor, :reason, :mid FROM changed"
        ),
        {"lot": lot_id, "old": old.value if old else None, "new": new.value, "actor": actor,
         "reason": reason, "mid": message_id},
    )


async def record_lot_status(
    conn: AsyncConnection,
    lot_id: int,
    old: LotStatus | None,
    new: LotStatus,
    actor: str,
    reason: str | None = None,
    message_id: uuid.UUID | None = None,
) -> None:
    await conn.execute(
        text(
            "INSERT INTO lot_status_history (lot_id, from_status, to_status, actor, reason, message_id) "
            "VALUES (:lot, :old, :new, :actor, :reason, :mid)"
        ),
        {"lot": lot_id, "old": old.value if old else None, "new": new.value, "actor": actor,
         "reason": reason, "mid": message_id},
    )


async def next_daily_value(conn: AsyncConnection, table: str, key_column: str, day: date) -> int:
    """Gap-free per-day counter: the row lock taken by the upsert serialises concurrent callers."""
    assert table in ("lot_number_sequences", "work_order_sequences")
    row = await conn.execute(
        text(
            f"INSERT INTO {table} ({key_column}, last_value) VALUES (:d, 1) "
            f"ON CONFLICT ({key_column}) DO UPDATE SET last_value = {table}.last_value + 1 RETURNING last_value"
        ),
        {"d": day},
    )
    return int(row.scalar_one())


async def raise_lot_sequence(conn: AsyncConnection, day: date, at_least: int) -> None:
    await conn.execute(
        text(
            "INSERT INTO lot_number_sequences (production_date, last_value) VALUES (:d, :v) "
            "ON CONFLICT (production_date) DO UPDATE "
            "SET last_value = GREATEST(lot_number_sequences.last_value, EXCLUDED.last_value)"
        ),
        {"d": day, "v": at_least},
    )


async def find_product_model(conn: AsyncConnection, code_or_name: str) -> dict[str, Any] | None:
    row = await conn.execute(
        text("SELECT * FROM product_models WHERE model_code = :c OR model_name = :c ORDER BY id LIMIT 1"),
        {"c": code_or_name},
    )
    found = row.mappings().first()
    return dict(found) if found else None


async def runs_of_lot(conn: AsyncConnection, lot_id: int) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text("SELECT * FROM process_runs WHERE lot_id = :lot AND serial_id IS NULL ORDER BY sequence_number"),
        {"lot": lot_id},
    )
    return [dict(r) for r in rows.mappings()]


async def insert_result(conn: AsyncConnection, values: dict[str, Any]) -> int:
    row = await conn.execute(
        text(
            "INSERT INTO process_results (run_id, lot_id, process_id, message_id, source_station, "
            "source_file_name, source_sha256, worker_id, start_time, complete_time, result, failure_reasons, "
            "process_data, replay) VALUES (:run_id, :lot_id, :process_id, :message_id, :source_station, "
            ":source_file_name, :source_sha256, :worker_id, :start_time, :complete_time, :result, "
            "CAST(:failure_reasons AS jsonb), CAST(:process_data AS jsonb), :replay) RETURNING id"
        ),
        values,
    )
    return int(row.scalar_one())


async def complete_run(
    conn: AsyncConnection, run_id: int, complete_time: datetime, worker_id: str, result: str
) -> None:
    """First completion closes the run; later ones (re-tests) update the verdict and the count."""
    await conn.execute(
        text(
            "UPDATE process_runs SET status = 'COMPLETED', "
            "complete_time = COALESCE(complete_time, :t), complete_worker_id = COALESCE(complete_worker_id, :w), "
            "completed_recorded_at = COALESCE(completed_recorded_at, now()), "
            "result = :r, completion_count = completion_count + 1 WHERE id = :id"
        ),
        {"t": complete_time, "w": worker_id, "r": result, "id": run_id},
    )


async def insert_many(conn: AsyncConnection, sql: str, rows: list[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(text(sql), rows)


async def lock_lot_for_completion(
    conn: AsyncConnection, lot_number: str, process_id: str, worker_id: str, sha256: str | None
) -> dict[str, Any] | None:
    """LOT row (locked), its run of the process, worker check and whether the file was stored: one round trip."""
    row = await conn.execute(
        text(
            "SELECT l.id, l.status, r.id AS run_id, "
            "EXISTS (SELECT 1 FROM workers w WHERE w.worker_id = :w AND w.active) AS worker_active, "
            "(CAST(:sha AS text) IS NOT NULL AND EXISTS (SELECT 1 FROM process_results pr "
            "WHERE pr.source_sha256 = :sha)) AS seen_file "
            "FROM lots l LEFT JOIN process_runs r ON r.lot_id = l.id AND r.process_id = :p AND r.serial_id IS NULL "
            "WHERE l.lot_number = :n FOR UPDATE OF l"
        ),
        {"n": lot_number, "p": process_id, "w": worker_id, "sha": sha256},
    )
    found = row.mappings().first()
    return dict(found) if found else None
