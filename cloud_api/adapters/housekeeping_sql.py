"""SQL of central housekeeping (issue 17 point 4): processed_messages retention and the audit trail's size.

processed_messages rows past the retention are read in id-stable batches (locked, so two runs never archive the
same rows) and deleted by exactly the ids that were archived. The audit trail is only measured, never touched.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True, slots=True)
class ProcessedRow:
    """One idempotency claim: the answer the centre gave to a message id."""

    message_id: uuid.UUID
    message_type: str
    source_station: str
    outcome: str
    http_status: int
    response: Any
    received_at: datetime


@dataclass(frozen=True, slots=True)
class TableFacts:
    rows: int
    total_bytes: int  # table + indexes + TOAST
    oldest: datetime | None
    newest: datetime | None
    rows_last_30_days: int


@dataclass(frozen=True, slots=True)
class StationHold:
    """A station whose outbox may still replay a message: its oldest record was created at `oldest_record_at`."""

    site: str
    line: str
    station: str
    online: bool
    outbox_depth: int
    oldest_record_at: datetime


_SELECT_DUE = text("""
SELECT message_id, message_type, source_station, outcome, http_status, response, received_at
FROM processed_messages
WHERE received_at < :cutoff
ORDER BY received_at, message_id
LIMIT :limit
FOR UPDATE SKIP LOCKED
""")

_DELETE = text("""
DELETE FROM processed_messages
WHERE message_id = ANY(CAST(:ids AS uuid[])) AND received_at < :cutoff
""")

_COUNT_DUE = text(
    "SELECT count(*) AS n, min(received_at) AS oldest FROM processed_messages WHERE received_at < :cutoff"
)

_FACTS = """
SELECT (SELECT count(*) FROM {table}) AS rows,
       pg_total_relation_size('{table}') AS total_bytes,
       (SELECT min({time}) FROM {table}) AS oldest,
       (SELECT max({time}) FROM {table}) AS newest,
       (SELECT count(*) FROM {table} WHERE {time} >= now() - interval '30 days') AS rows_last_30_days
"""
_TABLES = {"processed_messages": "received_at", "audit_log": "occurred_at"}

# A station with records in its outbox, or gone offline (its last will may not carry its depth), may replay
# messages as old as its oldest record; reported_at − age is when that record was created.
_HOLDS = text("""
SELECT site, line, station, online, outbox_depth,
       reported_at - make_interval(secs => coalesce(oldest_pending_age_s, 0)) AS oldest_record_at
FROM station_states
WHERE outbox_depth > 0 OR NOT online
ORDER BY oldest_record_at
""")


async def lock_due(conn: AsyncConnection, cutoff: datetime, limit: int) -> list[ProcessedRow]:
    """The oldest `limit` rows received before `cutoff`, locked until the transaction ends."""
    result = await conn.execute(_SELECT_DUE, {"cutoff": cutoff, "limit": limit})
    return [ProcessedRow(**row._mapping) for row in result]


async def delete_archived(conn: AsyncConnection, ids: list[uuid.UUID], cutoff: datetime) -> int:
    result = await conn.execute(_DELETE, {"ids": [str(i) for i in ids], "cutoff": cutoff})
    return int(result.rowcount)


async def count_due(conn: AsyncConnection, cutoff: datetime) -> tuple[int, datetime | None]:
    row = (await conn.execute(_COUNT_DUE, {"cutoff": cutoff})).one()
    return int(row.n), row.oldest


async def table_facts(conn: AsyncConnection, table: str) -> TableFacts:
    """Size, row count and age of processed_messages or audit_log (the only two names accepted)."""
    sql = _FACTS.format(table=table, time=_TABLES[table])  # names from the fixed map above, never from input
    row = (await conn.execute(text(sql))).one()
    return TableFacts(int(row.rows), int(row.total_bytes), row.oldest, row.newest, int(row.rows_last_30_days))


async def station_holds(conn: AsyncConnection) -> list[StationHold]:
    return [StationHold(**row._mapping) for row in await conn.execute(_HOLDS)]
