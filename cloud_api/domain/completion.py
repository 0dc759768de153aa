"""Completion (완공) decision (spec §3.4.2): what one completion changes, from what the store holds. Pure.

Every completion path uses `decide_completion`: the REST route and the MQTT one-by-one path (a batch of one,
services/process_complete.py) and the batch path (services/batch_completion.py, which feeds it the batch's view,
updated item by item). What the decision writes is stored by one function, adapters/completion_store.write.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from cloud_api.domain.errors import DomainError
from cloud_api.domain.lots import LotStatus, status_after_completion
from cloud_api.domain.workers import require_active_worker
from mes_contracts.completion import CompletionRecord
from mes_contracts.errors import ErrorCode
from mes_contracts.process_data import ProcessDataBase


@dataclass(frozen=True, slots=True)
class CompletionSource:
    station: str
    message_id: uuid.UUID
    file_name: str | None = None
    sha256: str | None = None
    replay: bool = False
    actor: str | None = None  # the audit trail's actor; default: the worker at the station ("W001@st03")


@dataclass(frozen=True, slots=True)
class LotForCompletion:
    """The store's view of one completion: its LOT (locked), the LOT's run of the process, the worker, the file."""

    lot_id: int
    status: LotStatus
    run_id: int | None
    worker_active: bool
    file_seen: bool


@dataclass(frozen=True, slots=True)
class Accepted:
    """A completion to store: a result row (with measurements and component LOTs), the run closed or updated,
    and the LOT's status change when the last process completed it."""

    record: CompletionRecord
    typed: ProcessDataBase
    source: CompletionSource
    lot_id: int
    run_id: int
    verdict: str
    status_before: LotStatus
    new_status: LotStatus | None

    @property
    def transition(self) -> tuple[LotStatus, LotStatus] | None:
        return (self.status_before, self.new_status) if self.new_status is not None else None

    def summary(self) -> dict[str, Any]:
        """The answer's data, as the station and the REST caller get it."""
        data = completion_summary(self.record, self.verdict)
        data["lot_status"] = (self.new_status or self.status_before).value
        data["failure_reasons"] = self.typed.failure_reasons()
        return data


@dataclass(frozen=True, slots=True)
class DuplicateFile:
    """The file (its sha256) is stored already, under another message id: answered as a duplicate, no write."""

    summary: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """The answer to keep under a message id the batch claimed (services/idempotency for one by one)."""

    message_id: uuid.UUID
    outcome: str
    http_status: int
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Written:
    """What the store wrote: the new result ids and the stored answers (as stored), by message id."""

    result_ids: dict[uuid.UUID, int]
    responses: dict[uuid.UUID, dict[str, Any]]


def decide_completion(
    record: CompletionRecord, source: CompletionSource, lot: LotForCompletion | None
) -> Accepted | DuplicateFile:
    """The completion's outcome; DomainError when it is refused (unknown LOT, process not started, worker)."""
    if lot is None:
        raise DomainError(ErrorCode.LOT_NOT_FOUND, {"lot_number": record.lot_number})
    if lot.file_seen:
        return DuplicateFile(completion_summary(record, "duplicate"))
    if lot.run_id is None:
        raise DomainError(
            ErrorCode.PROCESS_NOT_STARTED, {"lot_number": record.lot_number, "process_id": record.process_id}
        )
    require_active_worker(record.worker_id, lot.worker_active)
    typed = record.typed_data()
    new_status = status_after_completion(lot.status, record.process_id)
    return Accepted(record, typed, source, lot.lot_id, lot.run_id, typed.outcome(), lot.status, new_status)


def completion_summary(record: CompletionRecord, result: str) -> dict[str, Any]:
    """The answer's data for a completion (accepted ones add `lot_status` and `failure_reasons`)."""
    return {
        "lot_number": record.lot_number,
        "process_id": record.process_id,
        "process_name": record.process_name,
        "worker_id": record.worker_id,
        "start_time": record.start_time.isoformat(),
        "complete_time": record.complete_time.isoformat(),
        "result": result,
    }
