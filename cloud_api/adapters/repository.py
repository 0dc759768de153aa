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


_INSERT_RUN = (
    "WITH wo AS (INSERT INTO work_order_sequences (work_day, last_value) VALUES (:work_day, 1) "
    "ON CONFLICT (work_day) DO UPDATE SET last_value = work_order_sequences.last_value + 1 "
    "RETURNING last_value), "
    "run AS (INSERT INTO process_runs (lot_id, process_id, work_order_id, sequence_number, status, start_time, "
    "start_worker_id, start_message_id, start_source) SELECT :lot_id, :process_id, "
    ":prefix || lpad(wo.last_value::text, GREATEST(3, length(wo.last_value::text)), '0'), "
    ":sequence_number, 'STARTED', :start_time, :worker_id, :message_id, :source FROM wo "
    "ON CONFLICT (lot_id, process_id) WHERE serial_id IS NULL DO NOTHING RETURNING id, work_order_id)"
)
# The LOT's status change rides along, and happens only when the run was inserted.
_CHANGE_STATUS = (
    ", changed AS (UPDATE lots SET status = :new_status, updated_at = now() "
    "WHERE id = :lot_id AND EXISTS (SELECT 1 FROM run) RETURNING id), "
    "history AS (INSERT INTO lot_status_history (lot_id, from_status, to_status, actor, reason, message_id) "
    "SELECT id, :old_status, :new_status, :worker_id, :reason, :message_id FROM changed)"
)
# Built once: text() parses its bind parameters with a regex, a cost worth not paying per start.
_INSERT_RUN_ONLY = text(_INSERT_RUN + " SELECT id, work_order_id FROM run")
_INSERT_RUN_AND_STATUS = text(_INSERT_RUN + _CHANGE_STATUS + " SELECT id, work_order_id FROM run")


async def insert_run(
    conn: AsyncConnection, values: dict[str, Any], status: tuple[LotStatus, LotStatus, str] | None = None
) -> tuple[int, str] | None:
    """Take the day's next work-order number and insert the run in one round trip.

    Returns (run id, work-order id), or None when the LOT already has a run of that process (the whole
    transaction is then abandoned, so the counter does not move). The number is padded as
    `mes_contracts.numbering.format_work_order_id` pads it (at least three digits). `status` (old, new,
    reason) moves the LOT in the same statement, recorded in its history with the start's worker as actor.
    """
    params = dict(values)
    if status is not None:
        params |= {"old_status": status[0].value, "new_status": status[1].value, "reason": status[2]}
    row = await conn.execute(_INSERT_RUN_AND_STATUS if status is not None else _INSERT_RUN_ONLY, params)
    found = row.first()
    return (int(found.id), str(found.work_order_id)) if found else None


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


_LOCK_LOT_FOR_START = text(
    "SELECT l.id, l.status, "
    "EXISTS (SELECT 1 FROM workers w WHERE w.worker_id = :w AND w.active) AS worker_active, "
    "COALESCE((SELECT json_agg(json_build_object('process_id', r.process_id, 'status', r.status, "
    "'work_order_id', r.work_order_id, 'start_time', r.start_time)) FROM process_runs r "
    "WHERE r.lot_id = l.id AND r.serial_id IS NULL), '[]'::json) AS runs "
    "FROM lots l WHERE l.lot_number = :n FOR UPDATE OF l"
)


async def lock_lot_for_start(conn: AsyncConnection, lot_number: str, worker_id: str) -> dict[str, Any] | None:
    """LOT row (locked), whether the worker is active and the LOT's runs: one round trip for a start."""
    row = await conn.execute(_LOCK_LOT_FOR_START, {"n": lot_number, "w": worker_id})
    found = row.mappings().first()
    return dict(found) if found else None


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
