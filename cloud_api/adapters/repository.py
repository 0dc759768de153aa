"""SQL used by the use cases; every function runs inside the caller's transaction."""

from __future__ import annotations

import uuid
from datetime import date
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
