"""Print job rules without I/O: reading a cmd/print-label message, expiry, retry backoff, result envelopes."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError

from edge_gateway.printing.queue_store import NewResult
from mes_contracts.envelope import Envelope, MessageType, Source, make_envelope
from mes_contracts.errors import ErrorCode
from mes_contracts.labels import PrinterState, PrintJob, PrintMode, PrintResult, PrintStatus

EXPIRED_CODE = ErrorCode.GATEWAY_TIMEOUT.value  # the person's request timed out at the centre already
EXPIRED_DETAIL = "expired before the printer could take it; nothing printed"
INTERRUPTED_CODE = ErrorCode.INTERNAL_ERROR.value
# A serial label printed twice is a traceability hazard; a missing one is visible and can be reprinted.
INTERRUPTED_DETAIL = "interrupted while printing (gateway stopped); check the printer, reprint if missing"
INVALID_CODE = ErrorCode.INVALID_LABEL_DATA.value


class InvalidJob(ValueError):
    """A cmd/print-label message that is not a print job envelope."""


def parse_job(raw: bytes) -> PrintJob:
    try:
        envelope = Envelope.from_bytes(raw)
    except ValidationError as error:
        raise InvalidJob(f"not an envelope: {error.errors()[0]['msg']}") from None
    if envelope.type is not MessageType.LABEL_PRINT_JOB:
        raise InvalidJob(f"envelope {envelope.message_id} is a {envelope.type}, not a print job")
    try:
        return PrintJob.model_validate(envelope.payload)
    except ValidationError as error:
        raise InvalidJob(f"envelope {envelope.message_id}: invalid print job: {error}") from None


def is_expired(job: PrintJob, now: datetime | None = None) -> bool:
    """Only IMMEDIATE jobs expire (a person waits for them); QUEUED ones wait for the printer however long."""
    if job.mode is not PrintMode.IMMEDIATE or job.expires_at is None:
        return False
    return (now or datetime.now(UTC)) >= job.expires_at


@dataclass
class Backoff:
    """Doubling pause between attempts on a printer that is not ready, from `start` up to `cap`."""

    start: float
    cap: float
    _next: float = 0.0

    def next(self) -> float:
        delay = self._next or self.start
        self._next = min(delay * 2, max(self.cap, self.start))
        return delay

    def reset(self) -> None:
        self._next = 0.0


@dataclass(frozen=True, slots=True)
class ResultMaker:
    """Builds a result's envelope once (message id, seq, time); the row keeps exactly these bytes."""

    source: Source
    seq: Callable[[], int]

    def make(
        self,
        job: PrintJob,
        status: PrintStatus,
        state: PrinterState,
        error_code: str | None = None,
        detail: str | None = None,
    ) -> NewResult:
        now = datetime.now(UTC)
        result = PrintResult(
            job_id=job.job_id,
            printer_id=job.printer.printer_id,
            status=status,
            printer_state=state,
            error_code=error_code,
            detail=detail,
            print_time=now if status is PrintStatus.PRINTED else None,
        )
        envelope = make_envelope(
            MessageType.LABEL_PRINT_RESULT, self.source, self.seq(), result.model_dump(mode="json"), occurred_at=now
        )
        return NewResult(
            str(envelope.message_id), str(job.job_id), status.value, envelope.model_dump_json(), time.time()
        )
