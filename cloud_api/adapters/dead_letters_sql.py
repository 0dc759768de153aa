"""SQL of the dead-letter table: one row per poison message, found again (not duplicated) on redelivery."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

# The first row's error stays: a redelivery only counts itself and moves last_seen_at.
UPSERT_SQL = text(
    "INSERT INTO dead_letters (letter_key, message_id, message_type, source_station, topic, payload, payload_size, "
    "error_code, error_class, error_message, http_status) VALUES (:key, :message_id, :message_type, :station, "
    ":topic, :payload, :size, :code, :error_class, :error_message, :http_status) "
    "ON CONFLICT (letter_key) DO UPDATE SET delivery_count = dead_letters.delivery_count + 1, last_seen_at = now() "
    "RETURNING id, (xmax = 0) AS inserted"
)


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    key: str
    message_id: uuid.UUID | None
    message_type: str | None
    station: str | None
    topic: str | None
    payload: bytes
    payload_size: int
    error_code: str
    error_class: str
    error_message: str
    http_status: int


async def upsert(conn: AsyncConnection, row: DeadLetterRow) -> tuple[int, bool]:
    """(row id, True when this call created the row)."""
    params: dict[str, Any] = {
        "key": row.key,
        "message_id": row.message_id,
        "message_type": row.message_type,
        "station": row.station,
        "topic": row.topic,
        "payload": row.payload,
        "size": row.payload_size,
        "code": row.error_code,
        "error_class": row.error_class,
        "error_message": row.error_message,
        "http_status": row.http_status,
    }
    found = (await conn.execute(UPSERT_SQL, params)).one()
    return int(found.id), bool(found.inserted)
