"""Start (착공) use case (spec §3.4.1): one decision for the REST route and the MQTT request handler."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.adapters import repository as repo
from cloud_api.adapters.database import Database
from cloud_api.domain.errors import DomainError
from cloud_api.domain.lots import LotStatus, status_after_start
from cloud_api.domain.sequencing import RunSnapshot, check_start_allowed, resolve_step
from cloud_api.firmware.domain import FIRMWARE_PROCESS_ID
from cloud_api.firmware.service import active_firmware_info
from cloud_api.labels.domain import SERIAL_PROCESS_ID
from cloud_api.labels.serials import issue_for_start
from cloud_api.services.audit import AuditEntry, current_request_id, record_audit_many, station_actor
from mes_contracts.errors import ErrorCode
from mes_contracts.numbering import work_order_prefix
from mes_contracts.start import StartData, StartRequest


async def start_process(
    db: Database,
    conn: AsyncConnection,
    request: StartRequest,
    source: str,
    message_id: uuid.UUID | None = None,
    lang: str = "ko",
    actor: str | None = None,
) -> StartData:
    lot = await repo.lock_lot_for_start(conn, request.lot_number, request.worker_id)
    if lot is None:
        raise DomainError(ErrorCode.LOT_NOT_FOUND, {"lot_number": request.lot_number})
    step = resolve_step(request.process_id, request.process_name, request.lot_number, lang)
    if not lot["worker_active"]:
        raise DomainError(ErrorCode.WORKER_NOT_FOUND, {"worker_id": request.worker_id})
    lot_status = LotStatus(lot["status"])
    try:
        check_start_allowed(request.lot_number, lot_status, step, _snapshots(db, lot["runs"]), lang)
    except DomainError as error:
        if error.code is not ErrorCode.PREVIOUS_PROCESS_NOT_COMPLETED:
            raise
        # The runs came with the locking statement's snapshot: a completion committed while we waited for the
        # lock is missing there. Read them again before refusing.
        fresh = await repo.runs_of_lot(conn, lot["id"])
        check_start_allowed(request.lot_number, lot_status, step, _snapshots(db, fresh), lang)

    work_day = db.local(request.start_time).date()
    new_status = status_after_start(lot_status)
    inserted = await repo.insert_run(conn, {
        "lot_id": lot["id"], "process_id": step.process_id, "sequence_number": step.sequence,
        "start_time": request.start_time, "worker_id": request.worker_id, "message_id": message_id,
        "source": source, "work_day": work_day, "prefix": work_order_prefix(work_day),
    }, (lot_status, new_status, f"{step.process_id} start") if new_status is not None else None)
    if inserted is None:  # a racing start of the same process committed while we waited for the lock
        raise DomainError(ErrorCode.DUPLICATE_START, {"lot_number": request.lot_number,
                                                      "process_id": step.process_id})
    _, work_order_id = inserted
    firmware_info = await active_firmware_info(conn) if step.process_id == FIRMWARE_PROCESS_ID else None
    issued = (await issue_for_start(conn, lot["id"], request, source, actor)
              if step.process_id == SERIAL_PROCESS_ID else None)
    # Written last by run_once (deferred): the audit insert takes the chain lock, held until commit.
    await _audit(conn, request, step.process_id, work_order_id, source, message_id, actor,
                 (lot_status, new_status) if new_status is not None else None)
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


async def _audit(
    conn: AsyncConnection, request: StartRequest, process_id: str, work_order_id: str, source: str,
    message_id: uuid.UUID | None, actor: str | None, transition: tuple[LotStatus, LotStatus] | None,
) -> None:
    """process.start, plus lot.status when the start moved the LOT (REST: the request id; MQTT: the message id)."""
    who = actor or station_actor(request.worker_id, source)
    request_id = current_request_id() or (str(message_id) if message_id else None)
    new = {"work_order_id": work_order_id, "lot_number": request.lot_number, "process_id": process_id,
           "worker_id": request.worker_id, "start_time": request.start_time, "source": source}
    entries = [AuditEntry(who, "process.start", "process_run", f"{request.lot_number}/{process_id}", None, new,
                          None, request_id)]
    if transition is not None:
        entries.append(AuditEntry(who, "lot.status", "lot", request.lot_number, {"status": transition[0].value},
                                  {"status": transition[1].value}, f"{process_id} start", request_id))
    await record_audit_many(conn, entries)


def _snapshots(db: Database, runs: list[dict[str, Any]]) -> dict[str, RunSnapshot]:
    snapshots = {}
    for run in runs:
        started = run["start_time"]
        moment = datetime.fromisoformat(started) if isinstance(started, str) else started
        snapshots[run["process_id"]] = RunSnapshot(run["status"], run["work_order_id"], db.local(moment).isoformat())
    return snapshots
