"""SQL used by the use cases; every function runs inside the caller's transaction."""

from __future__ import annotations

import uuid
from datetime import date

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.adapters.rows import LotRow, ProcessRunRow, ProductModelRow
from cloud_api.domain.lots import LotStatus

_LOT_COLUMNS = (
    "l.id, l.lot_number, l.product_model_id, l.target_quantity, l.shift, l.production_date, l.sequence, l.status, "
    "l.created_by, l.created_at, l.updated_at, pm.model_code, pm.model_name"
)
_RUN_COLUMNS = (
    "id, process_id, work_order_id, sequence_number, status, start_time, start_worker_id, complete_time, "
    "complete_worker_id, result, completion_count"
)


async def lock_lot(conn: AsyncConnection, lot_number: str) -> LotRow | None:
    """The LOT row, locked until commit so that starts and completions of one LOT serialise."""
    row = await conn.execute(
        text(
            f"SELECT {_LOT_COLUMNS} FROM lots l "
            "JOIN product_models pm ON pm.id = l.product_model_id WHERE l.lot_number = :n FOR UPDATE OF l"
        ),
        {"n": lot_number},
    )
    found = row.first()
    return LotRow(*found) if found else None


async def find_lot(conn: AsyncConnection, lot_number: str) -> LotRow | None:
    row = await conn.execute(
        text(
            f"SELECT {_LOT_COLUMNS} FROM lots l "
            "JOIN product_models pm ON pm.id = l.product_model_id WHERE l.lot_number = :n"
        ),
        {"n": lot_number},
    )
    found = row.first()
    return LotRow(*found) if found else None


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
        {
            "lot": lot_id,
            "old": old.value if old else None,
            "new": new.value,
            "actor": actor,
            "reason": reason,
            "mid": message_id,
        },
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
        {
            "lot": lot_id,
            "old": old.value if old else None,
            "new": new.value,
            "actor": actor,
            "reason": reason,
            "mid": message_id,
        },
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


async def find_product_model(conn: AsyncConnection, code_or_name: str) -> ProductModelRow | None:
    row = await conn.execute(
        text(
            "SELECT id, model_code, model_name FROM product_models WHERE model_code = :c OR model_name = :c "
            "ORDER BY id LIMIT 1"
        ),
        {"c": code_or_name},
    )
    found = row.first()
    return ProductModelRow(*found) if found else None


async def runs_of_lot(conn: AsyncConnection, lot_id: int) -> list[ProcessRunRow]:
    rows = await conn.execute(
        text(
            f"SELECT {_RUN_COLUMNS} FROM process_runs WHERE lot_id = :lot AND serial_id IS NULL "
            "ORDER BY sequence_number"
        ),
        {"lot": lot_id},
    )
    return [ProcessRunRow(*r) for r in rows]
