"""Completion (완공) use case (spec §3.4.2), one at a time (REST, and MQTT when a batch falls back).

The decision is cloud_api/domain/completion.decide_completion; the writing is cloud_api/adapters/completion_store.write
(the same two the batch path uses). This module adds the locked read and the audit rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.adapters import completion_store
from cloud_api.adapters.database import Database
from cloud_api.audit.trail import AuditEntry, current_request_id, record_audit_many, station_actor
from cloud_api.domain.completion import Accepted, CompletionSource, DuplicateFile, decide_completion
from cloud_api.domain.errors import DomainError
from cloud_api.services.ports import CompletionStore
from mes_contracts.completion import CompletionRecord
from mes_contracts.errors import ErrorCode
from mes_contracts.process_data import describe_validation_error

# CompletionSource lives in the domain now; the routes and the ingestor keep importing it from here.
__all__ = ["CompletionOutcome", "CompletionSource", "complete_process", "completion_audit", "parse_completion"]


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
            {
                "lot_number": raw.get("lot_number"),
                "process_id": raw.get("process_id"),
                "errors": describe_validation_error(error),
            },
            "; ".join(describe_validation_error(error)),
        ) from error


async def complete_process(
    db: Database,
    conn: AsyncConnection,
    record: CompletionRecord,
    source: CompletionSource,
    store: CompletionStore | None = None,
) -> CompletionOutcome:
    """One completion in the caller's transaction: locked read, the domain's decision, the one writer.
    `store`: PostgreSQL on `conn` unless given (tests/test_store_contract.py runs this on an in-memory fake too)."""
    store = store or completion_store.PgCompletionStore(conn)
    lot = await store.read_for_completion(record.lot_number, record.process_id, record.worker_id, source.sha256)
    decided = decide_completion(record, source, lot)
    if isinstance(decided, DuplicateFile):
        return CompletionOutcome(True, decided.summary)
    await store.write([decided])  # a batch of one; run_once stores the answer
    await record_audit_many(conn, completion_audit(decided))
    return CompletionOutcome(False, decided.summary())


def completion_audit(accepted: Accepted) -> list[AuditEntry]:
    """process.complete, plus lot.status when it moved the LOT; the batch path writes the very same rows."""
    record, source, verdict, transition = accepted.record, accepted.source, accepted.verdict, accepted.transition
    actor = source.actor or station_actor(record.worker_id, source.station)
    request_id = current_request_id() or str(source.message_id)
    new = {
        "lot_number": record.lot_number,
        "process_id": record.process_id,
        "worker_id": record.worker_id,
        "start_time": record.start_time,
        "complete_time": record.complete_time,
        "result": verdict,
        "message_id": source.message_id,
        "source_station": source.station,
        "source_file_name": source.file_name,
        "source_sha256": source.sha256,
    }
    entries = [
        AuditEntry(
            actor,
            "process.complete",
            "process_run",
            f"{record.lot_number}/{record.process_id}",
            None,
            new,
            None,
            request_id,
        )
    ]
    if transition is not None:
        entries.append(
            AuditEntry(
                actor,
                "lot.status",
                "lot",
                record.lot_number,
                {"status": transition[0].value},
                {"status": transition[1].value},
                f"{record.process_id} completion",
                request_id,
            )
        )
    return entries
