"""Start (착공) use case (spec §3.4.1): one decision for the REST route and the MQTT request handler.

Two ways to carry out an allowed start, with the same decision (domain/start.decide_start) and the same store
module (adapters/start_sql.py):

* `start_process`, in the caller's transaction: the LOT row is locked, then the run, the serials (PROC-007)
  and the audit rows are written. Every refusal is decided here.
* `plan_start` + `write_planned_start`, on an autocommit connection: the LOT is read without a lock and an
  allowed start is written by one statement that re-checks the LOT's status under its row lock (two round
  trips instead of five). Whatever that path cannot answer alone (any refusal, a changed LOT, a racing start,
  PROC-007's serials) it hands to `start_process`, which decides again from the locked state.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.adapters import start_sql
from cloud_api.adapters.database import Database
from cloud_api.audit.trail import AuditEntry, current_request_id, record_audit_many, rows_json, station_actor
from cloud_api.domain.errors import DomainError
from cloud_api.domain.lots import LotStatus
from cloud_api.domain.start import LotForStart, NewRun, Transition, decide_start
from cloud_api.firmware.domain import FIRMWARE_PROCESS_ID
from cloud_api.firmware.service import active_firmware_info
from cloud_api.labels.domain import SERIAL_PROCESS_ID
from cloud_api.labels.serials import issue_for_start
from cloud_api.services.ports import StartStore
from mes_contracts.errors import ErrorCode
from mes_contracts.numbering import work_order_prefix
from mes_contracts.route import ProcessStep
from mes_contracts.start import StartData, StartRequest


@dataclass(frozen=True, slots=True)
class StartOrigin:
    """Who asks: the station (`source`, e.g. KR/L1/st01), the MQTT message id (None over REST), the answer's
    language, and the signed-in user for REST (None at a station: the audit trail then names worker@station)."""

    source: str
    message_id: uuid.UUID | None = None
    lang: str = "ko"
    actor: str | None = None


@dataclass(frozen=True, slots=True)
class PlannedStart:
    """An allowed start, decided from an unlocked read; its work-order number is known once it is written."""

    data: StartData  # work_order_id is "" until write_planned_start
    run: NewRun
    seen_status: LotStatus
    transition: Transition | None
    audit: list[AuditEntry]


def _new_run(db: Database, request: StartRequest, lot_id: int, step: ProcessStep, origin: StartOrigin) -> NewRun:
    work_day = db.local(request.start_time).date()
    return NewRun(
        lot_id,
        step.process_id,
        step.sequence,
        request.start_time,
        request.worker_id,
        origin.message_id,
        origin.source,
        work_day,
        work_order_prefix(work_day),
    )


async def start_process(
    db: Database, conn: AsyncConnection, request: StartRequest, origin: StartOrigin, store: StartStore | None = None
) -> StartData:
    """Decide with the LOT row locked and write the start in the caller's transaction (any process).
    `store`: PostgreSQL on `conn` unless given (tests/test_store_contract.py runs this on an in-memory fake too)."""
    store = store or start_sql.PgStartStore(conn)
    lot = await store.lock_lot_for_start(request.lot_number, request.worker_id)
    try:
        decided = decide_start(request, lot, db.zone, origin.lang)
    except DomainError as error:
        if error.code is not ErrorCode.PREVIOUS_PROCESS_NOT_COMPLETED or lot is None:
            raise
        # The runs came with the locking statement's snapshot: a completion committed while we waited for the
        # lock is missing there. Read them again before refusing.
        lot = replace(lot, runs=await store.runs_of_lot(lot.lot_id))
        decided = decide_start(request, lot, db.zone, origin.lang)
    assert lot is not None
    step, transition = decided.step, decided.transition
    inserted = await store.insert_run(_new_run(db, request, lot.lot_id, step, origin), transition)
    if inserted is None:  # a racing start of the same process committed while we waited for the lock
        raise DomainError(ErrorCode.DUPLICATE_START, {"lot_number": request.lot_number, "process_id": step.process_id})
    _, work_order_id = inserted
    firmware_info = await active_firmware_info(conn) if step.process_id == FIRMWARE_PROCESS_ID else None
    issued = (
        await issue_for_start(conn, lot.lot_id, request, origin.source, origin.actor)
        if step.process_id == SERIAL_PROCESS_ID
        else None
    )
    # Written last by run_once (deferred): the audit insert takes the chain lock, held until commit.
    await record_audit_many(conn, _audit_entries(request, step.process_id, work_order_id, origin, transition))
    return _data(request, step, work_order_id, firmware_info, issued)


async def plan_start(
    db: Database,
    conn: AsyncConnection,
    request: StartRequest,
    origin: StartOrigin,
) -> PlannedStart | None:
    """Decide from an unlocked read; None when `start_process` must answer (refusals, PROC-007)."""
    lot = await start_sql.read_lot_for_start(conn, request.lot_number, request.worker_id)
    return await plan_for_lot(db, request, origin, lot, lambda: active_firmware_info(conn))


async def plan_for_lot(
    db: Database,
    request: StartRequest,
    origin: StartOrigin,
    lot: LotForStart | None,
    firmware: Callable[[], Awaitable[Any]] | None,
) -> PlannedStart | None:
    """plan_start's decision on a LOT read by any store (the ingestor reads it on psycopg: adapters/start_fast.py).
    `firmware` reads the active firmware for PROC-004; None leaves a firmware start to the other paths."""
    try:
        decided = decide_start(request, lot, db.zone, origin.lang)
    except DomainError:
        return None
    step, transition = decided.step, decided.transition
    if lot is None or step.process_id == SERIAL_PROCESS_ID:
        return None
    firmware_info = None
    if step.process_id == FIRMWARE_PROCESS_ID:
        if firmware is None:
            return None
        firmware_info = await firmware()
    return PlannedStart(
        data=_data(request, step, "", firmware_info, None),
        run=_new_run(db, request, lot.lot_id, step, origin),
        seen_status=decided.lot_status,
        transition=transition,
        audit=_audit_entries(request, step.process_id, "", origin, transition),
    )


async def write_planned_start(
    conn: AsyncConnection,
    plan: PlannedStart,
    answer: dict[str, Any] | None,
) -> str | None:
    """Write the run, its audit rows and the stored answer (if any) at once; the new work-order id, or None when
    the LOT changed status or the worker was disabled since the read. Raises IntegrityError when the run or the
    answer exists already."""
    written = await start_sql.start_in_one_statement(
        conn, plan.run, plan.seen_status, plan.transition, rows_json(plan.audit), answer
    )
    return written[1] if written else None


def _data(
    request: StartRequest,
    step: ProcessStep,
    work_order_id: str,
    firmware_info: Any,
    issued: Any,
) -> StartData:
    return StartData(
        lot_number=request.lot_number,
        process_id=step.process_id,
        process_name=request.process_name,
        worker_id=request.worker_id,
        start_time=request.start_time,
        work_order_id=work_order_id,
        sequence_number=step.sequence,
        firmware_info=firmware_info,
        serial_numbers=issued.serial_numbers if issued else None,
        printer_id=issued.printer_id if issued else None,
    )


def _audit_entries(
    request: StartRequest,
    process_id: str,
    work_order_id: str,
    origin: StartOrigin,
    transition: Transition | None,
) -> list[AuditEntry]:
    """process.start, plus lot.status when the start moved the LOT (REST: the request id; MQTT: the message id)."""
    who = origin.actor or station_actor(request.worker_id, origin.source)
    request_id = current_request_id() or (str(origin.message_id) if origin.message_id else None)
    new = {
        "work_order_id": work_order_id,
        "lot_number": request.lot_number,
        "process_id": process_id,
        "worker_id": request.worker_id,
        "start_time": request.start_time,
        "source": origin.source,
    }
    entries = [
        AuditEntry(
            who, "process.start", "process_run", f"{request.lot_number}/{process_id}", None, new, None, request_id
        )
    ]
    if transition is not None:
        entries.append(
            AuditEntry(
                who,
                "lot.status",
                "lot",
                request.lot_number,
                {"status": transition[0].value},
                {"status": transition[1].value},
                transition[2],
                request_id,
            )
        )
    return entries
