"""Set-based SQL for a batch of completions: a constant number of multi-row statements in the caller's transaction."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.adapters.audit_sql import insert_from_json

PENDING = "pending"

# Claim every new id (sorted, so two batches wait on each other instead of deadlocking) and, from the statement's
# snapshot (which cannot see the rows this statement inserts), the answers already stored for the others.
CLAIM_SQL = text(
    "WITH input AS (SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:sources AS text[])) AS t(message_id, source)), "
    "claimed AS (INSERT INTO processed_messages (message_id, message_type, source_station, outcome, http_status, "
    "response) SELECT message_id, :type, source, :pending, 0, CAST('{}' AS jsonb) FROM input ORDER BY message_id "
    "ON CONFLICT (message_id) DO NOTHING RETURNING message_id) "
    "SELECT message_id, true AS claimed, NULL AS outcome, NULL AS http_status, NULL AS response FROM claimed "
    "UNION ALL SELECT p.message_id, false, p.outcome, p.http_status, p.response FROM processed_messages p "
    "WHERE p.message_id = ANY(CAST(:ids AS uuid[]))"
)
# Lock every LOT of the batch in id order: two batches (or a batch and a single completion) cannot deadlock.
LOCK_LOTS_SQL = text(
    "SELECT id, lot_number, status FROM lots WHERE lot_number = ANY(CAST(:lots AS text[])) ORDER BY id FOR UPDATE"
)
# Read after the locks are held, so a start or completion committed while we waited is seen.
CONTEXT_SQL = text(
    "SELECT (SELECT COALESCE(json_agg(json_build_array(r.lot_id, r.process_id, r.id)), '[]'::json) "
    "FROM process_runs r WHERE r.lot_id = ANY(CAST(:lot_ids AS bigint[])) AND r.serial_id IS NULL) AS runs, "
    "(SELECT COALESCE(array_agg(w.worker_id::text), '{}') FROM workers w "
    "WHERE w.worker_id = ANY(CAST(:workers AS text[])) AND w.active) AS workers, "
    "(SELECT COALESCE(array_agg(pr.source_sha256::text), '{}') FROM process_results pr "
    "WHERE pr.source_sha256 = ANY(CAST(:shas AS char(64)[]))) AS seen"
)
RESULT_COLUMNS = (
    "run_id bigint, lot_id bigint, process_id text, message_id uuid, source_station text, source_file_name text, "
    "source_sha256 text, worker_id text, start_time timestamptz, complete_time timestamptz, result text, "
    "failure_reasons jsonb, process_data jsonb, replay boolean, n integer"
)
# Results, component LOTs, runs, LOT transitions, audit rows and the stored answers: one statement, one round trip.
WRITE_SQL = text(
    "WITH results AS (INSERT INTO process_results (run_id, lot_id, process_id, message_id, source_station, "
    "source_file_name, source_sha256, worker_id, start_time, complete_time, result, failure_reasons, process_data, "
    "replay) SELECT run_id, lot_id, process_id, message_id, source_station, source_file_name, source_sha256, "
    "worker_id, start_time, complete_time, result, failure_reasons, process_data, replay "
    f"FROM jsonb_to_recordset(CAST(:results AS jsonb)) AS x({RESULT_COLUMNS}) ORDER BY n "
    "RETURNING id, message_id), "
    "components AS (INSERT INTO component_lots (lot_id, result_id, process_id, component_kind, component_lot) "
    "SELECT x.lot_id, results.id, x.process_id, x.kind, x.lot FROM jsonb_to_recordset(CAST(:components AS jsonb)) "
    "AS x(message_id uuid, lot_id bigint, process_id text, kind text, lot text, n integer) "
    "JOIN results ON results.message_id = x.message_id ORDER BY x.n), "
    "runs AS (UPDATE process_runs r SET status = 'COMPLETED', complete_time = COALESCE(r.complete_time, x.t), "
    "complete_worker_id = COALESCE(r.complete_worker_id, x.w), "
    "completed_recorded_at = COALESCE(r.completed_recorded_at, now()), result = x.verdict, "
    "completion_count = r.completion_count + x.n FROM jsonb_to_recordset(CAST(:runs AS jsonb)) "
    "AS x(run_id bigint, t timestamptz, w text, verdict text, n integer) WHERE r.id = x.run_id), "
    "lot_changes AS (SELECT * FROM jsonb_to_recordset(CAST(:lots AS jsonb)) "
    "AS x(lot_id bigint, old text, new text, actor text, reason text, message_id uuid)), "
    "changed AS (UPDATE lots l SET status = c.new, updated_at = now() FROM lot_changes c WHERE l.id = c.lot_id "
    "RETURNING l.id), "
    "history AS (INSERT INTO lot_status_history (lot_id, from_status, to_status, actor, reason, message_id) "
    "SELECT c.lot_id, c.old, c.new, c.actor, c.reason, c.message_id FROM lot_changes c "
    "JOIN changed ON changed.id = c.lot_id), "
    "answered AS (UPDATE processed_messages p SET outcome = x.outcome, http_status = x.http_status, "
    "response = x.response FROM jsonb_to_recordset(CAST(:messages AS jsonb)) "
    "AS x(message_id uuid, outcome text, http_status integer, response jsonb) WHERE p.message_id = x.message_id "
    "RETURNING p.message_id, p.response), "
    f"audited AS ({insert_from_json('audit')}) "
    "SELECT message_id, id AS result_id, NULL AS response FROM results "
    "UNION ALL SELECT message_id, NULL, response FROM answered"
)
MEASUREMENT_SQL = text(
    "INSERT INTO measurements (time, lot_id, process_id, result_id, test_point_id, characteristic, value, unit, "
    "target, tolerance, lower_limit, upper_limit, result) SELECT time, lot_id, process_id, result_id, test_point_id, "
    "characteristic, value, unit, target, tolerance, lower_limit, upper_limit, result "
    "FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS x(time timestamptz, lot_id bigint, process_id text, "
    "result_id bigint, test_point_id text, characteristic text, value double precision, unit text, "
    "target double precision, tolerance double precision, lower_limit double precision, "
    "upper_limit double precision, result text)"
)


@dataclass(frozen=True, slots=True)
class Claims:
    claimed: frozenset[uuid.UUID]
    stored: dict[uuid.UUID, tuple[str, int, dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Written:
    result_ids: dict[uuid.UUID, int]
    responses: dict[uuid.UUID, dict[str, Any]]


def as_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, ensure_ascii=False)


async def claim(conn: AsyncConnection, ids: list[uuid.UUID], sources: list[str], message_type: str) -> Claims:
    """Ids this transaction now owns, and the (outcome, status, body) already stored for the others."""
    rows = await conn.execute(CLAIM_SQL, {"ids": ids, "sources": sources, "type": message_type, "pending": PENDING})
    claimed: set[uuid.UUID] = set()
    stored: dict[uuid.UUID, tuple[str, int, dict[str, Any]]] = {}
    for row in rows:
        if row.claimed:
            claimed.add(row.message_id)
        else:
            stored[row.message_id] = (row.outcome, row.http_status, row.response)
    return Claims(frozenset(claimed), stored)


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


async def write(
    conn: AsyncConnection,
    results: list[dict[str, Any]],
    components: list[dict[str, Any]],
    runs: list[dict[str, Any]],
    lots: list[dict[str, Any]],
    messages: list[dict[str, Any]],
    audit: str = "[]",
) -> Written:
    """`audit`: the audit rows as services.audit.rows_json gives them."""
    rows = await conn.execute(WRITE_SQL, {
        "results": as_json(results), "components": as_json(components), "runs": as_json(runs),
        "lots": as_json(lots), "messages": as_json(messages), "audit": audit,
    })
    result_ids: dict[uuid.UUID, int] = {}
    responses: dict[uuid.UUID, dict[str, Any]] = {}
    for row in rows:
        if row.result_id is not None:
            result_ids[row.message_id] = int(row.result_id)
        else:
            responses[row.message_id] = row.response
    return Written(result_ids, responses)


async def insert_measurements(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(MEASUREMENT_SQL, {"rows": as_json(rows)})
