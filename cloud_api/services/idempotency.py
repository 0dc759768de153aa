"""Processed-message ids: the answer to a message id is stored in the transaction of its work, once."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.audit.sql import insert_from_json
from mes_contracts.envelope import Outcome

# The batch path claims ids with this placeholder inside its own transaction (see adapters/batch_sql.py).
PENDING = "pending"


@dataclass(frozen=True, slots=True)
class StoredReply:
    outcome: Outcome
    http_status: int
    body: dict[str, Any]


async def load(conn: AsyncConnection, message_id: uuid.UUID) -> StoredReply | None:
    row = await conn.execute(
        text("SELECT outcome, http_status, response FROM processed_messages WHERE message_id = :id"),
        {"id": message_id},
    )
    found = row.first()
    if found is None or found.outcome == PENDING:
        return None
    return StoredReply(Outcome(found.outcome), found.http_status, found.response)


_RECORD_SQL = text(
    f"WITH audit AS ({insert_from_json('audit')} RETURNING 1) "
    "INSERT INTO processed_messages (message_id, message_type, source_station, outcome, http_status, response) "
    "SELECT :id, :type, :source, :o, :s, CAST(:b AS jsonb) WHERE (SELECT count(*) FROM audit) >= 0 "
    "ON CONFLICT (message_id) DO NOTHING RETURNING message_id"
)


async def record(
    conn: AsyncConnection,
    message_id: uuid.UUID,
    message_type: str,
    source: str,
    outcome: Outcome,
    http_status: int,
    body: dict[str, Any],
    audit_rows: str = "[]",
) -> bool:
    """Store the answer with the work it answers; False when another handler stored this id first.

    `audit_rows` (services/audit.rows_json) are appended to the audit trail by the same statement, before the
    answer row (the main query waits for the CTE), so the chain lock is taken by the transaction's last write.
    """
    row = await conn.execute(
        _RECORD_SQL,
        {
            "id": message_id,
            "type": message_type,
            "source": source,
            "o": outcome.value,
            "s": http_status,
            "b": json.dumps(body, ensure_ascii=False),
            "audit": audit_rows,
        },
    )
    return row.first() is not None


async def record_rejection(
    conn: AsyncConnection,
    message_id: uuid.UUID,
    message_type: str,
    source: str,
    http_status: int,
    body: dict[str, Any],
) -> StoredReply:
    """Store a rejection so a redelivery gets the same answer; a racing first writer wins."""
    await conn.execute(
        text(
            "INSERT INTO processed_messages (message_id, message_type, source_station, outcome, http_status, "
            "response) VALUES (:id, :type, :source, :o, :s, CAST(:b AS jsonb)) ON CONFLICT (message_id) DO NOTHING"
        ),
        {
            "id": message_id,
            "type": message_type,
            "source": source,
            "o": Outcome.REJECTED.value,
            "s": http_status,
            "b": json.dumps(body, ensure_ascii=False),
        },
    )
    stored = await load(conn, message_id)
    return stored or StoredReply(Outcome.REJECTED, http_status, body)
