"""THE store of a start (착공): every statement a start runs, for both ways of carrying it out.

* The locked path (services/process_start.start_process): `lock_lot_for_start`, then `insert_run` (the run, its
  work-order number and the LOT's status change in one statement), in the caller's transaction.
* The fast path (process_start.plan_start + write_planned_start): `read_lot_for_start` without a lock, then
  `start_in_one_statement`, which re-checks the LOT under its row lock and writes run, status change, audit rows
  and the stored answer at once, as its own transaction. It exists because it is measured: two round trips to
  PostgreSQL instead of five, P99 of an MQTT start 7.5–8.6 ms instead of 8.2–11.4 ms (bench/README.md). Its SQL
  is `_ONE_STATEMENT_SQL` below, built from the same fragments as `insert_run`.
Both paths decide with domain/start.decide_start on the `LotForStart` read here.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.adapters.workers_sql import active_worker
from cloud_api.domain.lots import LotStatus
from cloud_api.domain.start import LotForStart, NewRun, RunRow, Transition

_LOT_FOR_START = (
    "SELECT l.id, l.status, "
    f"{active_worker(':w')} AS worker_active, "
    "COALESCE((SELECT json_agg(json_build_object('process_id', r.process_id, 'status', r.status, "
    "'work_order_id', r.work_order_id, 'start_time', r.start_time)) FROM process_runs r "
    "WHERE r.lot_id = l.id AND r.serial_id IS NULL), '[]'::json) AS runs "
    "FROM lots l WHERE l.lot_number = :n"
)
# Built once: text() parses its bind parameters with a regex, a cost worth not paying per start.
_LOCK_LOT_FOR_START = text(_LOT_FOR_START + " FOR UPDATE OF l")
_READ_LOT_FOR_START = text(_LOT_FOR_START)

# The day's next work-order number, padded as mes_contracts.numbering.format_work_order_id pads it (>= 3 digits).
_NEXT_WORK_ORDER = (
    "wo AS (INSERT INTO work_order_sequences (work_day, last_value) SELECT :work_day, 1 {source} "
    "ON CONFLICT (work_day) DO UPDATE SET last_value = work_order_sequences.last_value + 1 "
    "RETURNING last_value), "
)
_INSERT_RUN = (
    "run AS (INSERT INTO process_runs (lot_id, process_id, work_order_id, sequence_number, status, start_time, "
    "start_worker_id, start_message_id, start_source) SELECT :lot_id, :process_id, "
    ":prefix || lpad(wo.last_value::text, GREATEST(3, length(wo.last_value::text)), '0'), "
    ":sequence_number, 'STARTED', :start_time, :worker_id, :message_id, :source FROM wo {on_conflict}"
    "RETURNING id, work_order_id)"
)
# The LOT's status change rides along, and happens only when the run was inserted.
_CHANGE_STATUS = (
    ", changed AS (UPDATE lots SET status = :new_status, updated_at = now() "
    "WHERE id = :lot_id AND EXISTS (SELECT 1 FROM run) RETURNING id), "
    "history AS (INSERT INTO lot_status_history (lot_id, from_status, to_status, actor, reason, message_id) "
    "SELECT id, :old_status, :new_status, :worker_id, :reason, :message_id FROM changed)"
)


def _insert_run_sql(status_change: bool) -> Any:
    return text(
        "WITH "
        + _NEXT_WORK_ORDER.format(source="")
        + _INSERT_RUN.format(on_conflict="ON CONFLICT (lot_id, process_id) WHERE serial_id IS NULL DO NOTHING ")
        + (_CHANGE_STATUS if status_change else "")
        + " SELECT id, work_order_id FROM run"
    )


_INSERT_RUN_SQL = {change: _insert_run_sql(change) for change in (False, True)}

# The one-statement start: the LOT must still have the status the decision was made on (its row is locked
# first, before the work-order counter and the audit chain) and the worker must still be active; a conflicting
# run or answer raises, so the
# statement (its own transaction) leaves nothing behind. The audit rows and the stored answer carry the new
# work-order number, which only this statement knows: it is set into the `work_order_id` keys.
_GUARD = (
    "guard AS (SELECT id FROM lots WHERE id = :lot_id AND status = :seen_status "
    f"AND {active_worker(':worker_id')} FOR UPDATE OF lots), "
)
_AUDIT = (
    ", audit AS (INSERT INTO audit_log (actor, action, entity, entity_key, old_value, new_value, reason, "
    "request_id) SELECT x.actor, x.action, x.entity, x.entity_key, x.old_value, CASE WHEN x.new_value ? "
    "'work_order_id' THEN jsonb_set(x.new_value, '{work_order_id}', to_jsonb(run.work_order_id)) "
    "ELSE x.new_value END, x.reason, x.request_id FROM run, jsonb_to_recordset(CAST(:audit AS jsonb)) AS "
    "x(n integer, actor text, action text, entity text, entity_key text, old_value jsonb, new_value jsonb, "
    "reason text, request_id text) ORDER BY x.n RETURNING 1)"
)
_ANSWER = (
    ", answered AS (INSERT INTO processed_messages (message_id, message_type, source_station, outcome, "
    "http_status, response) SELECT :message_id, :message_type, :source, :outcome, :http_status, "
    "jsonb_set(CAST(:body AS jsonb), '{data,work_order_id}', to_jsonb(run.work_order_id)) FROM run "
    "WHERE (SELECT count(*) FROM audit) >= 0 RETURNING 1)"
)


def _start_in_one_statement_sql(status_change: bool, answer: bool) -> Any:
    return text(
        "WITH "
        + _GUARD
        + _NEXT_WORK_ORDER.format(source="FROM guard")
        + _INSERT_RUN.format(on_conflict="")
        + (_CHANGE_STATUS if status_change else "")
        + _AUDIT
        + (_ANSWER if answer else "")
        + " SELECT id, work_order_id FROM run WHERE (SELECT count(*) FROM audit) >= 0"
        + (" AND (SELECT count(*) FROM answered) >= 0" if answer else "")
    )


_ONE_STATEMENT_SQL = {
    (change, answer): _start_in_one_statement_sql(change, answer)
    for change in (False, True)
    for answer in (False, True)
}


_RUNS_OF_LOT = text(
    "SELECT process_id, status, work_order_id, start_time FROM process_runs "
    "WHERE lot_id = :lot AND serial_id IS NULL ORDER BY sequence_number"
)


async def lock_lot_for_start(conn: AsyncConnection, lot_number: str, worker_id: str) -> LotForStart | None:
    """LOT row (locked), whether the worker is active and the LOT's runs: one round trip for a start."""
    return _lot(await conn.execute(_LOCK_LOT_FOR_START, {"n": lot_number, "w": worker_id}))


async def read_lot_for_start(conn: AsyncConnection, lot_number: str, worker_id: str) -> LotForStart | None:
    """The same as lock_lot_for_start without the lock, for the one-statement start that re-checks it."""
    return _lot(await conn.execute(_READ_LOT_FOR_START, {"n": lot_number, "w": worker_id}))


async def runs_of_lot(conn: AsyncConnection, lot_id: int) -> tuple[RunRow, ...]:
    """The LOT's runs read afresh (the locking statement's snapshot predates a completion we waited for)."""
    rows = await conn.execute(_RUNS_OF_LOT, {"lot": lot_id})
    return tuple(RunRow(r.process_id, r.status, r.work_order_id, r.start_time) for r in rows)


def _lot(result: Any) -> LotForStart | None:
    row = result.first()
    if row is None:
        return None
    runs = tuple(
        RunRow(r["process_id"], r["status"], r["work_order_id"], datetime.fromisoformat(r["start_time"]))
        for r in row.runs
    )
    return LotForStart(int(row.id), LotStatus(row.status), bool(row.worker_active), runs)


_RUN_FIELDS = tuple(f.name for f in fields(NewRun))


def _status_params(run: NewRun, status: Transition | None) -> dict[str, Any]:
    # Shallow on purpose: dataclasses.asdict deep-copies every value (~23 % of the start's Python calls).
    params = {name: getattr(run, name) for name in _RUN_FIELDS}
    if status is not None:
        params |= {"old_status": status[0].value, "new_status": status[1].value, "reason": status[2]}
    return params


async def insert_run(conn: AsyncConnection, run: NewRun, status: Transition | None = None) -> tuple[int, str] | None:
    """Take the day's next work-order number and insert the run in one round trip.

    Returns (run id, work-order id), or None when the LOT already has a run of that process (the whole
    transaction is then abandoned, so the counter does not move). `status` (old, new, reason) moves the LOT in
    the same statement, recorded in its history with the start's worker as actor.
    """
    row = await conn.execute(_INSERT_RUN_SQL[status is not None], _status_params(run, status))
    found = row.first()
    return (int(found.id), str(found.work_order_id)) if found else None


def one_statement_params(
    run: NewRun, seen_status: LotStatus, status: Transition | None, audit_rows: str
) -> dict[str, Any]:
    """The one-statement start's parameters but the stored answer's (also for adapters/start_fast.py)."""
    return _status_params(run, status) | {"seen_status": seen_status.value, "audit": audit_rows}


async def start_in_one_statement(
    conn: AsyncConnection,
    run: NewRun,
    seen_status: LotStatus,
    status: Transition | None,
    audit_rows: str,
    answer: dict[str, Any] | None,
) -> tuple[int, str] | None:
    """insert_run, the audit rows and (MQTT) the stored answer in one statement, for an autocommit connection.

    None when the LOT's status is no longer `seen_status`. A run of the process or an answer to the message
    that already exists raises IntegrityError. `answer`: message_type, outcome, http_status and the body (JSON
    text) to store under run.message_id.
    """
    params = one_statement_params(run, seen_status, status, audit_rows)
    if answer is not None:
        params |= answer
    row = await conn.execute(_ONE_STATEMENT_SQL[(status is not None, answer is not None)], params)
    found = row.first()
    return (int(found.id), str(found.work_order_id)) if found else None


class PgStartStore:
    """services/ports.StartStore (the locked path) on a connection in a transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def lock_lot_for_start(self, lot_number: str, worker_id: str) -> LotForStart | None:
        return await lock_lot_for_start(self._conn, lot_number, worker_id)

    async def runs_of_lot(self, lot_id: int) -> tuple[RunRow, ...]:
        return await runs_of_lot(self._conn, lot_id)

    async def insert_run(self, run: NewRun, transition: Transition | None) -> tuple[int, str] | None:
        return await insert_run(self._conn, run, transition)
