"""The batch path's reads (claim the ids, lock the LOTs, read runs, workers, hashes): three set-based statements,
and a fourth (the stored answers) only for a batch with redelivered ids.

What a batch writes is written by adapters/completion_store.write, the one writer of completions.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.adapters.workers_sql import active_worker

PENDING = "pending"

# Claim every new id (sorted, so two batches wait on each other instead of deadlocking). An id another transaction
# is inserting makes this statement wait for that transaction's end, so after it every id is either claimed here
# or stored by a committed transaction.
CLAIM_SQL = text(
    "INSERT INTO processed_messages (message_id, message_type, source_station, outcome, http_status, response) "
    "SELECT message_id, :type, source, :pending, 0, CAST('{}' AS jsonb) "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:sources AS text[])) AS t(message_id, source) ORDER BY message_id "
    "ON CONFLICT (message_id) DO NOTHING RETURNING message_id"
)
# The answers stored for the ids not claimed (redeliveries): read only when there are some, so a batch of new ids
# (nearly all) does not probe the index a second time for ids it has just inserted (issue 18.3, bench/README.md).
STORED_SQL = text(
    "SELECT message_id, outcome, http_status, response FROM processed_messages "
    "WHERE message_id = ANY(CAST(:ids AS uuid[]))"
)
# Lock every LOT of the batch in id order: two batches (or a batch and a single completion) cannot deadlock.
LOCK_LOTS_SQL = text(
    "SELECT id, lot_number, status FROM lots WHERE lot_number = ANY(CAST(:lots AS text[])) ORDER BY id FOR UPDATE"
)
# Read after the locks are held, so a start or completion committed while we waited is seen.
CONTEXT_SQL = text(
    "SELECT (SELECT COALESCE(json_agg(json_build_array(r.lot_id, r.process_id, r.id)), '[]'::json) "
    "FROM process_runs r WHERE r.lot_id = ANY(CAST(:lot_ids AS bigint[])) AND r.serial_id IS NULL) AS runs, "
    "(SELECT COALESCE(array_agg(x.id), '{}') FROM unnest(CAST(:workers AS text[])) AS x(id) "
    f"WHERE {active_worker('x.id')}) AS workers, "
    "(SELECT COALESCE(array_agg(pr.source_sha256::text), '{}') FROM process_results pr "
    "WHERE pr.source_sha256 = ANY(CAST(:shas AS char(64)[]))) AS seen"
)


@dataclass(frozen=True, slots=True)
class Claims:
    claimed: frozenset[uuid.UUID]
    stored: dict[uuid.UUID, tuple[str, int, dict[str, Any]]]


async def claim(conn: AsyncConnection, ids: list[uuid.UUID], sources: list[str], message_type: str) -> Claims:
    """Ids this transaction now owns, and the (outcome, status, body) already stored for the others."""
    rows = await conn.execute(CLAIM_SQL, {"ids": ids, "sources": sources, "type": message_type, "pending": PENDING})
    claimed = frozenset(row.message_id for row in rows)
    others = [message_id for message_id in ids if message_id not in claimed]
    stored: dict[uuid.UUID, tuple[str, int, dict[str, Any]]] = {}
    if others:
        for row in await conn.execute(STORED_SQL, {"ids": others}):
            stored[row.message_id] = (row.outcome, row.http_status, row.response)
    return Claims(claimed, stored)


async def lock_lots(conn: AsyncConnection, lot_numbers: list[str]) -> dict[str, tuple[int, str]]:
    """lot number → (id, status), every row locked until commit."""
    rows = await conn.execute(LOCK_LOTS_SQL, {"lots": lot_numbers})
    return {row.lot_number: (int(row.id), str(row.status)) for row in rows}


async def load_context(
    conn: AsyncConnection, lot_ids: list[int], workers: list[str], shas: list[str]
) -> tuple[dict[tuple[int, str], int], frozenset[str], frozenset[str]]:
    """(lot id, process) → LOT-level run id; active workers among `workers`; hashes among `shas` already stored."""
    row = (await conn.execute(CONTEXT_SQL, {"lot_ids": lot_ids, "workers": workers, "shas": shas})).one()
    runs = {(int(lot_id), str(process_id)): int(run_id) for lot_id, process_id, run_id in row.runs}
    return runs, frozenset(row.workers), frozenset(row.seen)
