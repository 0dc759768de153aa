"""THE place a completion is stored: `write` writes a list of decided completions (domain/completion.py).

One writer for process_results, measurements, component_lots and a completion's change of process_runs and lots
(with its lot_status_history row). The single completion (REST, MQTT one by one) is a batch of one; the batch path
(services/batch_completion.py) passes up to 200 and, with them, the answers to store and the audit rows, so a batch
costs a constant number of statements (this one and the measurements) whatever its size.
`read_for_completion` is the one-by-one path's locked read; the batch path's reads are in adapters/batch_sql.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.adapters.workers_sql import active_worker
from cloud_api.audit.sql import insert_from_json
from cloud_api.domain.completion import Accepted, LotForCompletion, StoredAnswer, Written
from cloud_api.domain.genealogy import STATUS_ORDER, named_serial, serial_effect
from cloud_api.domain.lots import LotStatus
from cloud_api.domain.measurements import extract_measurements

RESULT_COLUMNS = (
    "run_id bigint, lot_id bigint, process_id text, message_id uuid, source_station text, source_file_name text, "
    "source_sha256 text, worker_id text, start_time timestamptz, complete_time timestamptz, result text, "
    "failure_reasons jsonb, process_data jsonb, replay boolean, n integer, serial_number text"
)
# Serial genealogy (domain/genealogy.py): statuses only rise along this order, so a batch's effects fold into the
# highest one per serial and one UPDATE applies them; every change leaves a serial_status_history row.
SERIAL_RANKS = "ARRAY[" + ", ".join(f"'{s.value}'" for s in STATUS_ORDER) + "]"
SERIAL_CTES = (
    "effects AS (SELECT x.*, results.id AS result_id FROM jsonb_to_recordset(CAST(:serials AS jsonb)) "
    "AS x(n integer, lot_id bigint, serial_number text, status text, rank integer, cause text, process_id text, "
    "message_id uuid) JOIN results ON results.message_id = x.message_id), "
    "serial_targets AS (SELECT DISTINCT ON (s.id) s.id, s.status AS old, e.status AS new, e.process_id, e.cause, "
    "e.result_id, e.message_id FROM effects e JOIN serials s ON s.lot_id = e.lot_id "
    "AND (e.serial_number IS NULL OR s.serial_number = e.serial_number) "
    f"WHERE e.rank > array_position({SERIAL_RANKS}, CAST(s.status AS text)) ORDER BY s.id, e.rank DESC, e.n DESC), "
    "serials_changed AS (UPDATE serials s SET status = t.new FROM serial_targets t WHERE s.id = t.id "
    "RETURNING s.id), "
    "serial_history AS (INSERT INTO serial_status_history (serial_id, from_status, to_status, process_id, cause, "
    "result_id, message_id) SELECT t.id, t.old, t.new, t.process_id, t.cause, t.result_id, t.message_id "
    "FROM serial_targets t JOIN serials_changed c ON c.id = t.id)"
)
# The results' serial: looked up only by the statement for batches that touch serials (see write_sql).
WITH_SERIAL_ID = (
    "s.id FROM jsonb_to_recordset(CAST(:results AS jsonb)) AS x({columns}) LEFT JOIN serials s "
    "ON s.serial_number = x.serial_number AND s.lot_id = x.lot_id"
)
NO_SERIAL_ID = "CAST(NULL AS bigint) FROM jsonb_to_recordset(CAST(:results AS jsonb)) AS x({columns})"


def write_sql(serials: bool) -> TextClause:
    """Results, component LOTs, runs, LOT transitions, audit rows and the stored answers: one statement, one round
    trip. With `serials` it also links results to the serials they name and moves serial statuses (genealogy);
    a batch that names no serial and moves none (PROC-001…006 at LOT level: nearly all) runs the statement without
    those parts, so it costs what it cost before serials were tracked."""
    serial_id = (WITH_SERIAL_ID if serials else NO_SERIAL_ID).format(columns=RESULT_COLUMNS)
    return text(
        "WITH results AS (INSERT INTO process_results (run_id, lot_id, process_id, message_id, source_station, "
        "source_file_name, source_sha256, worker_id, start_time, complete_time, result, failure_reasons, "
        "process_data, replay, serial_id) SELECT x.run_id, x.lot_id, x.process_id, x.message_id, x.source_station, "
        "x.source_file_name, x.source_sha256, x.worker_id, x.start_time, x.complete_time, x.result, "
        f"x.failure_reasons, x.process_data, x.replay, {serial_id} ORDER BY x.n "
        "RETURNING id, message_id, serial_id), "
        f"{WRITE_REST}"
        + (f", {SERIAL_CTES} " if serials else " ")
        + "SELECT message_id, id AS result_id, serial_id, NULL AS response FROM results "
        "UNION ALL SELECT message_id, NULL, NULL, response FROM answered"
    )


WRITE_REST = (
    "components AS (INSERT INTO component_lots (lot_id, serial_id, result_id, process_id, component_kind, "
    "component_lot) SELECT x.lot_id, results.serial_id, results.id, x.process_id, x.kind, x.lot "
    "FROM jsonb_to_recordset(CAST(:components AS jsonb)) "
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
    f"audited AS ({insert_from_json('audit')})"
)
WRITE_SQL = write_sql(serials=False)
WRITE_SQL_SERIALS = write_sql(serials=True)
MEASUREMENT_SQL = text(
    "INSERT INTO measurements (time, lot_id, serial_id, process_id, result_id, test_point_id, characteristic, value, "
    "unit, target, tolerance, lower_limit, upper_limit, result, station) SELECT time, lot_id, serial_id, process_id, "
    "result_id, test_point_id, characteristic, value, unit, target, tolerance, lower_limit, upper_limit, result, "
    "station "
    "FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS x(time timestamptz, lot_id bigint, serial_id bigint, "
    "process_id text, "
    "result_id bigint, test_point_id text, characteristic text, value double precision, unit text, "
    "target double precision, tolerance double precision, lower_limit double precision, "
    "upper_limit double precision, result text, station text)"
)

# LOT row (locked), its run of the process, worker check and whether the file was stored: one round trip.
READ_SQL = text(
    "SELECT l.id, l.status, r.id AS run_id, "
    f"{active_worker(':w')} AS worker_active, "
    "(CAST(:sha AS text) IS NOT NULL AND EXISTS (SELECT 1 FROM process_results pr "
    "WHERE pr.source_sha256 = :sha)) AS seen_file "
    "FROM lots l LEFT JOIN process_runs r ON r.lot_id = l.id AND r.process_id = :p AND r.serial_id IS NULL "
    "WHERE l.lot_number = :n FOR UPDATE OF l"
)


class PgCompletionStore:
    """services/ports.CompletionStore on a connection in a transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def read_for_completion(
        self,
        lot_number: str,
        process_id: str,
        worker_id: str,
        sha256: str | None,
    ) -> LotForCompletion | None:
        return await read_for_completion(self._conn, lot_number, process_id, worker_id, sha256)

    async def write(
        self,
        accepted: Sequence[Accepted],
        answers: Sequence[StoredAnswer] = (),
        audit: str = "[]",
    ) -> Written:
        return await write(self._conn, accepted, answers, audit)


async def read_for_completion(
    conn: AsyncConnection, lot_number: str, process_id: str, worker_id: str, sha256: str | None
) -> LotForCompletion | None:
    row = (await conn.execute(READ_SQL, {"n": lot_number, "p": process_id, "w": worker_id, "sha": sha256})).first()
    if row is None:
        return None
    run_id = None if row.run_id is None else int(row.run_id)
    return LotForCompletion(int(row.id), LotStatus(row.status), run_id, bool(row.worker_active), bool(row.seen_file))


async def write(
    conn: AsyncConnection, accepted: Sequence[Accepted], answers: Sequence[StoredAnswer] = (), audit: str = "[]"
) -> Written:
    """Store the completions, the answers to their messages and the audit rows (services/audit.rows_json), in
    the caller's transaction: two statements for any number of completions."""
    effects = serial_rows(accepted)
    touches_serials = bool(effects) or any(serial_of(a) is not None for a in accepted)
    params = {
        "results": _json(result_rows(accepted)),
        "components": _json(component_rows(accepted)),
        "runs": _json(run_rows(accepted)),
        "lots": _json(lot_rows(accepted)),
        "messages": _json(message_rows(answers)),
        "audit": audit,
    }
    if touches_serials:
        params["serials"] = _json(effects)
    rows = await conn.execute(WRITE_SQL_SERIALS if touches_serials else WRITE_SQL, params)
    result_ids: dict[uuid.UUID, int] = {}
    serial_ids: dict[uuid.UUID, int] = {}
    responses: dict[uuid.UUID, dict[str, Any]] = {}
    for row in rows:
        if row.result_id is not None:
            result_ids[row.message_id] = int(row.result_id)
            if row.serial_id is not None:
                serial_ids[row.message_id] = int(row.serial_id)
        else:
            responses[row.message_id] = row.response
    measurements = measurement_rows(accepted, result_ids, serial_ids)
    if measurements:
        await conn.execute(MEASUREMENT_SQL, {"rows": _json(measurements)})
    return Written(result_ids, responses)


def _json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, ensure_ascii=False)


# Rows for the set-based statements (JSON records, read back by jsonb_to_recordset).


def result_rows(accepted: Sequence[Accepted]) -> list[dict[str, Any]]:
    return [
        {
            "n": n,
            "run_id": a.run_id,
            "lot_id": a.lot_id,
            "process_id": a.record.process_id,
            "message_id": str(a.source.message_id),
            "source_station": a.source.station,
            "source_file_name": a.source.file_name,
            "source_sha256": a.source.sha256,
            "worker_id": a.record.worker_id,
            "start_time": a.record.start_time.isoformat(),
            "complete_time": a.record.complete_time.isoformat(),
            "result": a.verdict,
            "failure_reasons": a.typed.failure_reasons(),
            "process_data": a.record.stored_process_data(),
            "replay": a.source.replay,
            "serial_number": serial_of(a),
        }
        for n, a in enumerate(accepted)
    ]


def serial_of(a: Accepted) -> str | None:
    """The serial a completion names (unit-level result), or None for a LOT-level one."""
    return named_serial(a.record.model_extra, a.record.process_data)


def serial_rows(accepted: Sequence[Accepted]) -> list[dict[str, Any]]:
    """Serial status effects (domain/genealogy.py), applied by WRITE_SQL's serial CTEs."""
    rows = []
    for n, a in enumerate(accepted):
        effect = serial_effect(a.record.process_id, a.verdict, serial_of(a))
        if effect is None:
            continue
        rows.append(
            {
                "n": n,
                "lot_id": a.lot_id,
                "serial_number": effect.serial_number,
                "status": effect.status.value,
                "rank": effect.rank,
                "cause": effect.cause,
                "process_id": a.record.process_id,
                "message_id": str(a.source.message_id),
            }
        )
    return rows


def component_rows(accepted: Sequence[Accepted]) -> list[dict[str, Any]]:
    return [
        {
            "n": n,
            "message_id": str(a.source.message_id),
            "lot_id": a.lot_id,
            "process_id": a.record.process_id,
            "kind": kind,
            "lot": value,
        }
        for n, a in enumerate(accepted)
        for kind, value in a.typed.component_lots().items()
    ]


def measurement_rows(
    accepted: Sequence[Accepted], result_ids: dict[uuid.UUID, int], serial_ids: dict[uuid.UUID, int] | None = None
) -> list[dict[str, Any]]:
    serial_ids = serial_ids or {}
    return [
        {
            "time": m.time.isoformat(),
            "lot_id": a.lot_id,
            "serial_id": serial_ids.get(a.source.message_id),
            "process_id": a.record.process_id,
            "result_id": result_ids[a.source.message_id],
            "test_point_id": m.test_point_id,
            "characteristic": m.characteristic,
            "value": m.value,
            "unit": m.unit,
            "target": m.target,
            "tolerance": m.tolerance,
            "lower_limit": m.lower_limit,
            "upper_limit": m.upper_limit,
            "result": m.result,
            "station": a.source.station,  # denormalised for the per-station rollups (migration 0010, H5)
        }
        for a in accepted
        for m in extract_measurements(a.typed, a.record.complete_time)
    ]


@dataclass(frozen=True, slots=True)
class RunUpdate:
    run_id: int
    first_complete_time: str
    first_worker_id: str
    last_verdict: str
    count: int


def run_updates(accepted: Sequence[Accepted]) -> list[RunUpdate]:
    """Per run, in id order: first completion's time and worker (kept by COALESCE), latest verdict, count."""
    by_run: dict[int, RunUpdate] = {}
    for item in accepted:
        previous = by_run.get(item.run_id)
        if previous is None:
            by_run[item.run_id] = RunUpdate(
                item.run_id, item.record.complete_time.isoformat(), item.record.worker_id, item.verdict, 1
            )
        else:
            by_run[item.run_id] = RunUpdate(
                item.run_id, previous.first_complete_time, previous.first_worker_id, item.verdict, previous.count + 1
            )
    return [by_run[run_id] for run_id in sorted(by_run)]


def run_rows(accepted: Sequence[Accepted]) -> list[dict[str, Any]]:
    return [
        {
            "run_id": u.run_id,
            "t": u.first_complete_time,
            "w": u.first_worker_id,
            "verdict": u.last_verdict,
            "n": u.count,
        }
        for u in run_updates(accepted)
    ]


def lot_rows(accepted: Sequence[Accepted]) -> list[dict[str, Any]]:
    return [
        {
            "lot_id": a.lot_id,
            "old": a.status_before.value,
            "new": a.new_status.value,
            "actor": a.record.worker_id,
            "reason": f"{a.record.process_id} completion",
            "message_id": str(a.source.message_id),
        }
        for a in accepted
        if a.new_status is not None
    ]


def message_rows(answers: Sequence[StoredAnswer]) -> list[dict[str, Any]]:
    return [
        {"message_id": str(a.message_id), "outcome": a.outcome, "http_status": a.http_status, "response": a.body}
        for a in answers
    ]
