"""Trace reads (issue 13): one SQL statement per answer, built with json_agg; read-only, no writer here.

Each `*_sql()` returns the statement so a bench can `EXPLAIN ANALYZE` exactly what the API runs
(bench/README.md "Trace query plans"); each `fetch_*` runs it and returns the JSON document (None: not found).
Times come back as ISO text in the session's zone; services/trace.py turns them into the factory's zone.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection

# Process names in the caller's language (:lang 'ko' | 'en').
PROCESS_NAME = "CASE WHEN :lang = 'en' THEN ps.name_en ELSE ps.name_ko END"
OUT_OF_LIMITS = "(m.value < m.lower_limit OR m.value > m.upper_limit)"
# The defect list looks a result's measurements up by result_id *and* a time window around it: on TimescaleDB the
# window lets the planner skip every chunk (compressed or not) but the one or two holding them (runtime chunk
# exclusion); without it each lookup probes every chunk. Measurement times are the completion time (PROC-003) or
# the station's `tested_at` (PROC-006), which lies inside the run; a day either side is the margin.
# The traces read a process's listed records in one pass (`_listed_results`) inside the LOT's span.
# `:m_from`/`:m_to` bound the whole statement's measurements with values the planner sees (a custom plan for the
# bound parameters), so TimescaleDB leaves the other chunks out while *planning*: with per-result bounds only,
# planning expanded every chunk for every sub-select (~90 ms at three years).
# `m.process_id` (always the record's) lets a compressed chunk read only that process's segments (segmentby
# process_id, characteristic, test_point_id): a PROC-003 failure no longer opens the 81 PROC-006 segments.
MEASURED_NEAR = (
    "m.process_id = {r}.process_id AND "
    "m.time >= {r}.start_time - INTERVAL '1 day' AND m.time <= {r}.complete_time + INTERVAL '1 day' "
    "AND m.time >= :m_from AND m.time <= :m_to"
)
# The time span of a LOT's records (the serial's LOT, or the LOT), widened like MEASURED_NEAR.
SPAN = (
    "SELECT min(pr.start_time) - INTERVAL '1 day' AS m_from, max(pr.complete_time) + INTERVAL '1 day' AS m_to "
    "FROM process_results pr WHERE pr.lot_id = ({lot})"
)
SERIAL_SPAN = text(SPAN.format(lot="SELECT s.lot_id FROM serials s WHERE s.serial_number = :serial"))
LOT_SPAN = text(SPAN.format(lot="SELECT l.id FROM lots l WHERE l.lot_number = :lot"))
MEASUREMENT = (
    "json_build_object('time', m.time, 'test_point_id', m.test_point_id, 'characteristic', m.characteristic, "
    "'value', m.value, 'unit', m.unit, 'target', m.target, 'tolerance', m.tolerance, 'lower_limit', m.lower_limit, "
    f"'upper_limit', m.upper_limit, 'result', m.result, 'out_of_limits', COALESCE({OUT_OF_LIMITS}, false))"
)
# Firmware flashed at PROC-004: the version the station reported, with the registry's MD5 (null if unknown).
FIRMWARE = (
    "CASE WHEN pr.process_id = 'PROC-004' THEN (SELECT json_build_object('version', "
    "pr.process_data->>'firmware_version', 'md5_hash', fv.md5_hash, 'filename', fv.filename, 'file_size', "
    "fv.file_size, 'target_mcu', fv.target_mcu) FROM (VALUES (1)) AS one(x) LEFT JOIN firmware_versions fv "
    "ON fv.version IN (pr.process_data->>'firmware_version', 'v' || (pr.process_data->>'firmware_version')) "
    "LIMIT 1) END"
)
RESULT = (
    "json_build_object('result_id', pr.id, 'level', CASE WHEN pr.serial_id IS NULL THEN 'LOT' ELSE 'UNIT' END, "
    "'serial_number', (SELECT u.serial_number FROM serials u WHERE u.id = pr.serial_id), 'result', pr.result, "
    "'failure_reasons', pr.failure_reasons, 'worker_id', pr.worker_id, 'station', pr.source_station, "
    "'file_name', pr.source_file_name, 'start_time', pr.start_time, 'complete_time', pr.complete_time, "
    "'recorded_at', pr.recorded_at, 'process_data', pr.process_data, "
    "'measurements', COALESCE(md.docs, '[]'), "
    "'component_lots', (SELECT COALESCE(json_agg(json_build_object('component_kind', c.component_kind, "
    "'component_lot', c.component_lot) ORDER BY c.id), '[]') FROM component_lots c "
    "WHERE c.lot_id = pr.lot_id AND c.result_id = pr.id), "
    f"'firmware', {FIRMWARE})"
)
LOT = (
    "json_build_object('lot_number', l.lot_number, 'product_model', pm.model_name, 'model_code', pm.model_code, "
    "'target_quantity', l.target_quantity, 'shift', l.shift, 'production_date', l.production_date, "
    "'status', l.status, 'created_by', l.created_by, 'created_at', l.created_at)"
)
LABEL = (
    "json_build_object('job_id', j.job_id, 'label_type', j.label_type, 'serial_number', "
    "(SELECT u.serial_number FROM serials u WHERE u.id = j.serial_id), 'printer_id', j.printer_id, "
    "'reprint', j.reprint, 'reason', j.reason, 'worker_id', j.worker_id, 'requested_by', j.requested_by, "
    "'status', j.status, 'requested_at', j.created_at, 'printed_at', j.printed_at)"
)


# A process's records are listed in full when there are at most this many of a kind; more (a vendor app that writes
# one file per unit before serials exist: ~100 per LOT) are summarised in `result_counts` / `failure_counts`, and
# the LOT trace lists their failures. Keeps a trace a few hundred rows whatever the station writes.
MAX_LISTED = 10


def _listed_results(lot_id: str, listed: str) -> str:
    """The records of process `ps` that `listed` keeps, each with its measurements, in completion order.

    The measurements of all of them are read in one pass (`md`), not one sub-select per record: on TimescaleDB a
    PROC-006 record has one row in each of 81 compressed segments, so each record's own look-up decompressed a
    batch in every segment (~3 ms); the LOT's failed records sit in the same batches, so one pass filtered by the
    records' ids (`= ANY`, which the chunks' bloom index on result_id also uses) costs about one record's look-up.
    """
    return (
        f"(WITH lr AS (SELECT pr.* FROM process_results pr WHERE pr.lot_id = {lot_id} "
        f"AND pr.process_id = ps.process_id AND ({listed})), "
        f"md AS (SELECT m.result_id, json_agg({MEASUREMENT} ORDER BY m.time, m.test_point_id, m.characteristic) "
        "AS docs FROM measurements m WHERE m.process_id = ps.process_id AND m.result_id = ANY(ARRAY(SELECT lr.id "
        "FROM lr)) AND m.time >= :m_from AND m.time <= :m_to GROUP BY m.result_id) "
        f"SELECT COALESCE(json_agg({RESULT} ORDER BY pr.complete_time, pr.id), '[]') FROM lr pr "
        "LEFT JOIN md ON md.result_id = pr.id)"
    )


def _processes(lot_id: str, listed: str) -> str:
    """The 8 processes of a LOT in route order: LOT-level run, counts of its records, the records `listed` keeps.

    `listed` is a condition on `pr` (one record) and `n` (the process's counts: total, lot_level, passed, failed).
    """
    return (
        f"(SELECT json_agg(json_build_object('process_id', ps.process_id, 'process_name', {PROCESS_NAME}, "
        "'sequence', ps.sequence, 'status', COALESCE(r.status, 'NOT_STARTED'), 'work_order_id', r.work_order_id, "
        "'start_time', r.start_time, 'start_worker_id', r.start_worker_id, 'start_station', r.start_source, "
        "'complete_time', r.complete_time, 'complete_worker_id', r.complete_worker_id, 'result', r.result, "
        "'completion_count', COALESCE(r.completion_count, 0), "
        "'result_counts', json_build_object('total', n.total, 'lot_level', n.lot_level, 'unit_level', "
        "n.total - n.lot_level, 'passed', n.passed, 'failed', n.failed), "
        "'failure_counts', (SELECT COALESCE(json_agg(json_build_object('reason', x.reason, 'count', x.n) "
        "ORDER BY x.n DESC, x.reason), '[]') FROM (SELECT why AS reason, count(*) AS n FROM process_results f, "
        f"jsonb_array_elements_text(f.failure_reasons) AS why WHERE f.lot_id = {lot_id} "
        "AND f.process_id = ps.process_id AND f.result = 'FAIL' GROUP BY why) x), "
        f"'results', {_listed_results(lot_id, listed)}"
        ") ORDER BY ps.sequence) FROM process_steps ps LEFT JOIN process_runs r "
        f"ON r.lot_id = {lot_id} AND r.process_id = ps.process_id AND r.serial_id IS NULL "
        "CROSS JOIN LATERAL (SELECT count(*) AS total, count(*) FILTER (WHERE c.serial_id IS NULL) AS lot_level, "
        "count(*) FILTER (WHERE c.result = 'PASS') AS passed, count(*) FILTER (WHERE c.result = 'FAIL') AS failed "
        f"FROM process_results c WHERE c.lot_id = {lot_id} AND c.process_id = ps.process_id) n)"
    )


# Serial trace: its own unit-level records, and the LOT-level ones while they are few enough to be the cart's.
SERIAL_LISTED = f"pr.serial_id = s.id OR (pr.serial_id IS NULL AND n.lot_level <= {MAX_LISTED})"
# LOT trace: every record while the process has few, else its failures.
LOT_LISTED = f"n.total <= {MAX_LISTED} OR pr.result = 'FAIL'"


def _lot_history(lot_id: str) -> str:
    return (
        "(SELECT COALESCE(json_agg(json_build_object('from_status', h.from_status, 'to_status', h.to_status, "
        "'changed_at', h.changed_at, 'actor', h.actor, 'reason', h.reason) ORDER BY h.changed_at, h.id), '[]') "
        f"FROM lot_status_history h WHERE h.lot_id = {lot_id})"
    )


def _serial_history(serial_id: str) -> str:
    return (
        "(SELECT COALESCE(json_agg(json_build_object('from_status', h.from_status, 'to_status', h.to_status, "
        "'changed_at', h.changed_at, 'process_id', h.process_id, 'cause', h.cause, 'message_id', h.message_id) "
        f"ORDER BY h.changed_at, h.id), '[]') FROM serial_status_history h WHERE h.serial_id = {serial_id})"
    )


def _components(lot_id: str, serial_filter: str) -> str:
    """The component lots a LOT (or serial) consumed, one row per process, kind, lot and serial, with the number of
    records that named it (a station writing one file per unit repeats the same spring lot a hundred times)."""
    return (
        "(SELECT COALESCE(json_agg(json_build_object('process_id', x.process_id, 'component_kind', x.component_kind, "
        "'component_lot', x.component_lot, 'serial_number', (SELECT u.serial_number FROM serials u "
        "WHERE u.id = x.serial_id), 'records', x.n) ORDER BY x.first), '[]') FROM (SELECT c.process_id, "
        "c.component_kind, c.component_lot, c.serial_id, count(*) AS n, min(c.id) AS first FROM component_lots c "
        f"WHERE c.lot_id = {lot_id} AND {serial_filter} GROUP BY 1, 2, 3, 4) x)"
    )


def serial_trace_sql() -> TextClause:
    """:serial, :lang → the serial, its LOT, history, 8 processes (LOT-level + its own results), labels."""
    return text(
        "SELECT CAST(json_build_object('serial', json_build_object('serial_number', s.serial_number, 'sequence', "
        "s.sequence, 'status', s.status, 'created_at', s.created_at), "
        f"'status_history', {_serial_history('s.id')}, "
        f"'lot', (SELECT {LOT} FROM lots l JOIN product_models pm ON pm.id = l.product_model_id "
        "WHERE l.id = s.lot_id), "
        f"'processes', {_processes('s.lot_id', SERIAL_LISTED)}, "
        f"'component_lots', {_components('s.lot_id', '(c.serial_id IS NULL OR c.serial_id = s.id)')}, "
        f"'labels', (SELECT COALESCE(json_agg({LABEL} ORDER BY j.created_at, j.queue_seq), '[]') "
        "FROM label_print_jobs j WHERE j.serial_id = s.id)) AS text) "
        "FROM serials s WHERE s.serial_number = :serial"
    )


def lot_trace_sql() -> TextClause:
    """:lot, :lang → the LOT, its history, 8 processes with every result, its serials with status, labels."""
    return text(
        f"SELECT CAST(json_build_object('lot', {LOT}, 'status_history', {_lot_history('l.id')}, "
        f"'processes', {_processes('l.id', LOT_LISTED)}, "
        f"'component_lots', {_components('l.id', 'true')}, "
        "'serials', (SELECT COALESCE(json_agg(json_build_object('serial_number', se.serial_number, 'sequence', "
        "se.sequence, 'status', se.status, 'created_at', se.created_at, 'failed_process', "
        "(SELECT f.process_id FROM process_results f WHERE f.serial_id = se.id AND f.result = 'FAIL' "
        "ORDER BY f.complete_time DESC, f.id DESC LIMIT 1)) ORDER BY se.sequence), '[]') "
        "FROM serials se WHERE se.lot_id = l.id), "
        f"'labels', (SELECT COALESCE(json_agg({LABEL} ORDER BY j.created_at, j.queue_seq), '[]') "
        "FROM label_print_jobs j WHERE j.lot_id = l.id)) AS text) "
        "FROM lots l JOIN product_models pm ON pm.id = l.product_model_id WHERE l.lot_number = :lot"
    )


def recall_sql() -> TextClause:
    """:lot, :kind (NULL: any kind), :lang → every LOT (and its serials) that consumed that component lot."""
    return text(
        "WITH used AS (SELECT DISTINCT ON (c.lot_id, c.serial_id, c.component_kind) c.lot_id, c.serial_id, "
        "c.component_kind, c.process_id, c.result_id FROM component_lots c WHERE c.component_lot = :lot "
        "AND (CAST(:kind AS text) IS NULL OR c.component_kind = :kind) ORDER BY c.lot_id, c.serial_id, "
        "c.component_kind, c.id) "
        "SELECT COALESCE(json_agg(json_build_object('lot_number', l.lot_number, 'lot_status', l.status, "
        "'production_date', l.production_date, 'product_model', pm.model_name, 'component_kind', u.component_kind, "
        f"'process_id', u.process_id, 'process_name', {PROCESS_NAME}, 'consumed_at', pr.complete_time, "
        "'worker_id', pr.worker_id, 'station', pr.source_station, "
        "'serials', (SELECT COALESCE(json_agg(json_build_object('serial_number', se.serial_number, 'status', "
        "se.status) ORDER BY se.sequence), '[]') FROM serials se WHERE se.lot_id = u.lot_id "
        "AND (u.serial_id IS NULL OR se.id = u.serial_id))) ORDER BY l.production_date, l.lot_number), '[]') "
        "FROM used u JOIN lots l ON l.id = u.lot_id JOIN product_models pm ON pm.id = l.product_model_id "
        "JOIN process_steps ps ON ps.process_id = u.process_id "
        "LEFT JOIN process_results pr ON pr.id = u.result_id"
    )


def defects_sql() -> TextClause:
    """:from, :to, :process (NULL: all), :limit, :lang → FAIL results with cause, counts by process and cause."""
    return text(
        "WITH f AS (SELECT pr.id, pr.lot_id, pr.serial_id, pr.process_id, pr.worker_id, pr.source_station, "
        "pr.start_time, pr.complete_time, pr.failure_reasons, pr.run_id FROM process_results pr "
        "WHERE pr.result = 'FAIL' "
        "AND pr.complete_time >= :from AND pr.complete_time < :to "
        "AND (CAST(:process AS text) IS NULL OR pr.process_id = :process)), "
        "page AS (SELECT * FROM f ORDER BY complete_time DESC, id DESC LIMIT :limit) "
        "SELECT json_build_object('total', (SELECT count(*) FROM f), "
        "'by_process', (SELECT COALESCE(json_agg(json_build_object('process_id', x.process_id, 'count', x.n) "
        "ORDER BY x.process_id), '[]') FROM (SELECT process_id, count(*) AS n FROM f GROUP BY process_id) x), "
        "'by_cause', (SELECT COALESCE(json_agg(json_build_object('process_id', x.process_id, 'cause', x.cause, "
        "'count', x.n) ORDER BY x.n DESC, x.process_id, x.cause), '[]') FROM (SELECT f.process_id, "
        "COALESCE(r.reason, 'unknown') AS cause, count(*) AS n FROM f LEFT JOIN LATERAL "
        "jsonb_array_elements_text(f.failure_reasons) AS r(reason) ON true GROUP BY 1, 2) x), "
        # Scalar sub-selects, not joins: the planner would hash whole serials and process_runs for a page of 200.
        "'defects', (SELECT COALESCE(json_agg(json_build_object('result_id', p.id, 'lot_number', "
        "(SELECT l.lot_number FROM lots l WHERE l.id = p.lot_id), 'serial_number', (SELECT se.serial_number "
        "FROM serials se WHERE se.id = p.serial_id), 'process_id', p.process_id, 'process_name', "
        f"{PROCESS_NAME}, 'worker_id', p.worker_id, 'start_worker_id', (SELECT r.start_worker_id "
        "FROM process_runs r WHERE r.id = p.run_id), "
        "'station', p.source_station, 'complete_time', p.complete_time, 'failure_reasons', p.failure_reasons, "
        f"'measurements', (SELECT COALESCE(json_agg({MEASUREMENT} ORDER BY m.time, m.test_point_id), '[]') "
        f"FROM measurements m WHERE m.result_id = p.id AND {MEASURED_NEAR.format(r='p')} "
        f"AND (m.result = 'FAIL' OR COALESCE({OUT_OF_LIMITS}, false)))) "
        "ORDER BY p.complete_time DESC, p.id DESC), '[]') FROM page p "
        "JOIN process_steps ps ON ps.process_id = p.process_id))"
    )


def _document(value: Any) -> Any:
    # psycopg decodes json itself; another driver may hand back the text.
    return json.loads(value) if isinstance(value, str) else value


# The statements' estimated costs are high (nested sub-selects over a hypertable's chunks) while they run in
# milliseconds: PostgreSQL's JIT would spend seconds compiling them. Off for the statement's transaction only.
NO_JIT = text("SET LOCAL jit = off")


async def _fetch(conn: AsyncConnection, statement: TextClause, params: dict[str, Any]) -> Any:
    await conn.execute(NO_JIT)
    return _document((await conn.execute(statement, params)).scalar())


async def _span(conn: AsyncConnection, statement: TextClause, params: dict[str, Any]) -> dict[str, Any]:
    row = (await conn.execute(statement, params)).first()
    if row is None or row.m_from is None:  # no records yet: an empty window
        now = datetime.now(UTC)
        return {"m_from": now, "m_to": now}
    return {"m_from": row.m_from, "m_to": row.m_to}


async def _fetch_text(conn: AsyncConnection, statement: TextClause, params: dict[str, Any]) -> str | None:
    await conn.execute(NO_JIT)
    document = (await conn.execute(statement, params)).scalar()
    return None if document is None else str(document)


# The two traces come back as JSON text: the services validate it with pydantic's own JSON parser, which costs
# less than the driver's json.loads followed by a validation of the Python objects (~3 ms of a 100 KB LOT trace).
async def fetch_serial_trace(conn: AsyncConnection, serial_number: str, lang: str) -> str | None:
    params: dict[str, Any] = {"serial": serial_number, "lang": lang}
    return await _fetch_text(conn, serial_trace_sql(), params | await _span(conn, SERIAL_SPAN, params))


async def fetch_lot_trace(conn: AsyncConnection, lot_number: str, lang: str) -> str | None:
    params: dict[str, Any] = {"lot": lot_number, "lang": lang}
    return await _fetch_text(conn, lot_trace_sql(), params | await _span(conn, LOT_SPAN, params))


async def fetch_recall(conn: AsyncConnection, component_lot: str, kind: str | None, lang: str) -> list[Any]:
    return list(await _fetch(conn, recall_sql(), {"lot": component_lot, "kind": kind, "lang": lang}) or [])


async def fetch_defects(
    conn: AsyncConnection, start: datetime, end: datetime, process_id: str | None, limit: int, lang: str
) -> dict[str, Any]:
    # The window's results were measured within a day of their run (MEASURED_NEAR), which started before `start`.
    span = {"m_from": start - timedelta(days=2), "m_to": end + timedelta(days=1)}
    params = {"from": start, "to": end, "process": process_id, "limit": limit, "lang": lang, **span}
    return dict(await _fetch(conn, defects_sql(), params))
