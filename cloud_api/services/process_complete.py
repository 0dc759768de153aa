"""Completion (완공) use case (spec §3.4.2): validate, then store run, measurements and component lots at once."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.adapters import repository as repo
from cloud_api.adapters.database import Database
from cloud_api.domain.errors import DomainError
from cloud_api.domain.lots import LotStatus, status_after_completion
from cloud_api.domain.measurements import extract_measurements
from cloud_api.services.audit import AuditEntry, current_request_id, record_audit_many, station_actor
from mes_contracts.completion import CompletionRecord
from mes_contracts.errors import ErrorCode
from mes_contracts.process_data import ProcessDataBase, describe_validation_error

MEASUREMENT_SQL = (
    "INSERT INTO measurements (time, lot_id, process_id, result_id, test_point_id, characteristic, value, unit, "
    "target, tolerance, lower_limit, upper_limit, result) VALUES (:time, :lot_id, :process_id, :result_id, "
    ":test_point_id, :characteristic, :value, :unit, :target, :tolerance, :lower, :upper, :result)"
)
COMPONENT_SQL = (
    "INSERT INTO component_lots (lot_id, result_id, process_id, component_kind, component_lot) "
    "VALUES (:lot_id, :result_id, :process_id, :kind, :lot)"
)


@dataclass(frozen=True, slots=True)
class CompletionSource:
    station: str
    message_id: uuid.UUID
    file_name: str | None = None
    sha256: str | None = None
    replay: bool = False
    actor: str | None = None  # the audit trail's actor; default: the worker at the station ("W001@st03")


@dataclass(frozen=True, slots=True)
class CompletionOutcome:
    duplicate: bool
    data: dict[str, Any]


def parse_completion(raw: dict[str, Any]) -> CompletionRecord:
    try:
        return CompletionRecord.model_validate(raw)
    except ValidationError as error:
        raise DomainError(
            ErrorCode.INVALID_PROCESS_DATA,
            {"lot_number": raw.get("lot_number"), "process_id": raw.get("process_id"),
             "errors": describe_validation_error(error)},
            "; ".join(describe_validation_error(error)),
        ) from error


async def complete_process(
    db: Database, conn: AsyncConnection, record: CompletionRecord, source: CompletionSource
) -> CompletionOutcome:
    lot = await repo.lock_lot_for_completion(conn, record.lot_number, record.process_id, record.worker_id,
                                             source.sha256)
    if lot is None:
        raise DomainError(ErrorCode.LOT_NOT_FOUND, {"lot_number": record.lot_number})
    if lot["seen_file"]:
        return CompletionOutcome(True, _summary(record, "duplicate"))
    if lot["run_id"] is None:
        raise DomainError(ErrorCode.PROCESS_NOT_STARTED,
                          {"lot_number": record.lot_number, "process_id": record.process_id})
    if not lot["worker_active"]:
        raise DomainError(ErrorCode.WORKER_NOT_FOUND, {"worker_id": record.worker_id})

    typed = record.typed_data()
    verdict = typed.outcome()
    result_id = await repo.insert_result(conn, {
        "run_id": lot["run_id"], "lot_id": lot["id"], "process_id": record.process_id,
        "message_id": source.message_id, "source_station": source.station, "source_file_name": source.file_name,
        "source_sha256": source.sha256, "worker_id": record.worker_id, "start_time": record.start_time,
        "complete_time": record.complete_time, "result": verdict,
        "failure_reasons": json.dumps(typed.failure_reasons()),
        "process_data": json.dumps(record.stored_process_data(), ensure_ascii=False), "replay": source.replay,
    })
    await _store_details(conn, lot["id"], record, typed, result_id)
    await repo.complete_run(conn, lot["run_id"], record.complete_time, record.worker_id, verdict)
    current = LotStatus(lot["status"])
    new_status = status_after_completion(current, record.process_id)
    if new_status is not None:
        await repo.set_lot_status(conn, lot["id"], current, new_status, record.worker_id,
                                  f"{record.process_id} completion", source.message_id)
    transition = (current, new_status) if new_status is not None else None
    await record_audit_many(conn, completion_audit(record, source, verdict, transition))
    summary = _summary(record, verdict)
    summary["lot_status"] = (new_status or current).value
    summary["failure_reasons"] = typed.failure_reasons()
    return CompletionOutcome(False, summary)


async def _store_details(
    conn: AsyncConnection, lot_id: int, record: CompletionRecord, typed: ProcessDataBase, result_id: int
) -> None:
    await repo.insert_many(conn, MEASUREMENT_SQL, [
        {"time": m.time, "lot_id": lot_id, "process_id": record.process_id, "result_id": result_id,
         "test_point_id": m.test_point_id, "characteristic": m.characteristic, "value": m.value, "unit": m.unit,
         "target": m.target, "tolerance": m.tolerance, "lower": m.lower_limit, "upper": m.upper_limit,
         "result": m.result}
        for m in extract_measurements(typed, record.complete_time)
    ])
    await repo.insert_many(conn, COMPONENT_SQL, [
        {"lot_id": lot_id, "result_id": result_id, "process_id": record.process_id, "kind": kind, "lot": value}
        for kind, value in typed.component_lots().items()
    ])


def completion_audit(
    record: CompletionRecord, source: CompletionSource, verdict: str, transition: tuple[LotStatus, LotStatus] | None
) -> list[AuditEntry]:
    """process.complete, plus lot.status when it moved the LOT; the batch path writes the very same rows."""
    actor = source.actor or station_actor(record.worker_id, source.station)
    request_id = current_request_id() or str(source.message_id)
    new = {"lot_number": record.lot_number, "process_id": record.process_id, "worker_id": record.worker_id,
           "start_time": record.start_time, "complete_time": record.complete_time, "result": verdict,
           "message_id": source.message_id, "source_station": source.station, "source_file_name": source.file_name,
           "source_sha256": source.sha256}
    entries = [AuditEntry(actor, "process.complete", "process_run", f"{record.lot_number}/{record.process_id}",
                          None, new, None, request_id)]
    if transition is not None:
        entries.append(AuditEntry(actor, "lot.status", "lot", record.lot_number, {"status": transition[0].value},
                                  {"status": transition[1].value}, f"{record.process_id} completion", request_id))
    return entries


def _summary(record: CompletionRecord, result: str) -> dict[str, Any]:
    return {
        "lot_number": record.lot_number,
        "process_id": record.process_id,
        "process_name": record.process_name,
        "worker_id": record.worker_id,
        "start_time": record.start_time.isoformat(),
        "complete_time": record.complete_time.isoformat(),
        "result": result,
    }
