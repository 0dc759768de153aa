"""Print and reprint use cases (§4.3, FR-SN-003): a job row first, then the station prints while a person waits."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.adapters.database import Database
from cloud_api.adapters.workers_sql import active_worker
from cloud_api.audit.trail import record_audit
from cloud_api.domain.errors import DomainError
from cloud_api.domain.workers import require_active_worker
from cloud_api.labels import queries, rendering
from cloud_api.labels import repository as repo
from cloud_api.labels.domain import Printer, failure_code, printer_error_data, result_update
from cloud_api.labels.results import record_result
from cloud_api.labels.rows import LabelSubject
from mes_contracts.errors import ErrorCode
from mes_contracts.labels import (
    PRINTER_ID_PATTERN,
    LabelType,
    LotLabelRequest,
    PrinterState,
    PrintJob,
    PrintMode,
    PrintResult,
    PrintStatus,
    SerialLabelRequest,
)
from mes_contracts.topics import StationAddress

log = logging.getLogger(__name__)


class ReprintRequest(BaseModel):
    """POST /api/v1/label/reprint: the same serial (or LOT) label again, with the reason and the worker."""

    model_config = ConfigDict(extra="forbid")

    serial_number: str | None = Field(default=None, min_length=1, max_length=50)
    lot_number: str | None = Field(default=None, min_length=1, max_length=40)
    reason: str = Field(min_length=1, max_length=500, description="why: damaged, lost, unreadable …")
    worker_id: str = Field(min_length=1, max_length=50)
    printer_id: str | None = Field(
        default=None, pattern=PRINTER_ID_PATTERN, description="default: the printer of the label's last print"
    )

    @model_validator(mode="after")
    def _one_subject(self) -> Self:
        if (self.serial_number is None) == (self.lot_number is None):
            raise ValueError("give exactly one of serial_number and lot_number")
        self.reason = self.reason.strip()
        if not self.reason:
            raise ValueError("reason must not be blank")
        return self


@dataclass(frozen=True, slots=True)
class Delivered:
    """A final result the station sent for an IMMEDIATE job, and the message it came in."""

    result: PrintResult
    message_id: uuid.UUID
    station: str  # the sender's topic prefix


class ChannelUnavailable(Exception):
    """The API has no broker link: nothing was sent."""


class PrintChannel(Protocol):
    async def print_and_wait(self, address: StationAddress, job: PrintJob, timeout: float) -> Delivered | None:
        """Publish `job` to the station and wait for its PRINTED/FAILED result; None when none came in time."""
        ...


@dataclass(frozen=True, slots=True)
class _Prepared:
    job: PrintJob
    printer: Printer
    lot_number: str
    serial_number: str | None


async def _active_printer(conn: AsyncConnection, printer_id: str) -> Printer:
    printer = await repo.find_printer(conn, printer_id)
    if printer is None or not printer.active:
        raise DomainError(ErrorCode.PRINTER_NOT_FOUND, {"printer_id": printer_id})
    return printer


async def _prepare(
    db: Database,
    conn: AsyncConnection,
    printer: Printer,
    found: LabelSubject,
    label: Any,
    actor: str,
    timeout: float,
    *,
    reprint: bool = False,
    worker_id: str | None = None,
    reason: str | None = None,
) -> _Prepared:
    program = await asyncio.to_thread(rendering.program_for, label, printer)
    label_type = queries.label_type_of(found)
    key = found.label_key
    values = repo.job_values(
        printer.printer_id,
        label_type,
        found.lot_id,
        found.serial_id,
        key,
        PrintMode.IMMEDIATE,
        actor,
        program=program,
        reprint=reprint,
        worker_id=worker_id,
        reason=reason,
        target=printer.address.prefix,
    )
    row = await repo.insert_job(conn, values)
    await record_audit(
        conn,
        actor=actor,
        action="label.reprint" if reprint else "label.print",
        entity="label",
        entity_key=key,
        new={
            "job_id": values["job_id"],
            "label_type": label_type,
            "printer_id": printer.printer_id,
            "worker_id": worker_id,
        },
        reason=reason,
    )
    job = PrintJob(
        job_id=values["job_id"],
        printer=printer.config(),
        label_type=label_type,
        label_key=key,
        program=program,
        mode=PrintMode.IMMEDIATE,
        reprint=reprint,
        created_at=row.created_at,
        expires_at=db.now() + timedelta(seconds=timeout),
    )
    return _Prepared(job, printer, found.lot_number, found.serial_number)


async def print_label(
    db: Database,
    channel: PrintChannel,
    request: LotLabelRequest | SerialLabelRequest,
    actor: str,
    timeout: float,
) -> dict[str, Any]:
    """§4.3: print the label the body describes, after checking it against what the centre knows."""
    async with db.transaction() as conn:
        printer = await _active_printer(conn, request.printer_id)
        if isinstance(request, SerialLabelRequest):
            found = await queries.find_serial(conn, request.serial_number)
            if found is None or found.lot_number != request.lot_number:
                raise DomainError(
                    ErrorCode.INVALID_LABEL_DATA,
                    {"serial_number": request.serial_number, "lot_number": request.lot_number},
                    "unknown serial, or not a serial of that LOT",
                )
            quantity = None
        else:
            found = await queries.find_lot(conn, request.lot_number)
            if found is None:
                raise DomainError(ErrorCode.INVALID_LABEL_DATA, {"lot_number": request.lot_number}, "unknown LOT")
            quantity = request.target_quantity
        if request.product_model not in (found.model_code, found.model_name):
            raise DomainError(
                ErrorCode.INVALID_LABEL_DATA, {"product_model": request.product_model}, "not the LOT's product model"
            )
        label = rendering.content(
            request.label_type,
            request.lot_number,
            request.product_model,
            request.created_date,
            found.serial_number,
            quantity,
        )
        prepared = await _prepare(db, conn, printer, found, label, actor, timeout)
    return await _send(db, channel, prepared, timeout)


async def reprint_label(
    db: Database,
    channel: PrintChannel,
    request: ReprintRequest,
    actor: str,
    timeout: float,
) -> dict[str, Any]:
    """FR-SN-003: the same number on a new label, recorded with reason, worker and time; never a new serial."""
    async with db.transaction() as conn:
        await _check_worker(conn, request.worker_id)
        found = await queries.subject(conn, request.serial_number, request.lot_number)
        label_type = queries.label_type_of(found)
        printer = await _reprint_printer(conn, request.printer_id, label_type, found)
        label = rendering.content(
            label_type,
            found.lot_number,
            found.model_name,
            queries.label_date(db, found),
            found.serial_number,
            found.target_quantity,
        )
        prepared = await _prepare(
            db,
            conn,
            printer,
            found,
            label,
            actor,
            timeout,
            reprint=True,
            worker_id=request.worker_id,
            reason=request.reason,
        )
    data = await _send(db, channel, prepared, timeout)
    return {**data, "reprint": True, "reason": request.reason, "worker_id": request.worker_id}


async def _check_worker(conn: AsyncConnection, worker_id: str) -> None:
    row = await conn.execute(text(f"SELECT {active_worker(':w')}"), {"w": worker_id})
    require_active_worker(worker_id, row.scalar())  # the one worker rule (domain/workers.py)


async def _reprint_printer(
    conn: AsyncConnection, printer_id: str | None, label_type: LabelType, found: LabelSubject
) -> Printer:
    """The named printer, else the one that printed this label last, else the default printer of its type."""
    if printer_id is not None:
        return await _active_printer(conn, printer_id)
    row = await conn.execute(
        text(
            "SELECT j.printer_id FROM label_print_jobs j JOIN printers p ON p.printer_id = j.printer_id "
            "WHERE p.active AND j.lot_id = :lot AND j.label_type = :type "
            "AND j.serial_id IS NOT DISTINCT FROM CAST(:serial AS bigint) ORDER BY j.queue_seq DESC LIMIT 1"
        ),
        {"lot": found.lot_id, "type": label_type.value, "serial": found.serial_id},
    )
    last = row.scalar()
    printer = await repo.find_printer(conn, last) if last else await repo.choose_printer(conn, label_type)
    if printer is None:
        raise DomainError(ErrorCode.PRINTER_NOT_FOUND, {"printer_id": None})
    return printer


async def _send(db: Database, channel: PrintChannel, prepared: _Prepared, timeout: float) -> dict[str, Any]:
    """Publish after the job row is committed (so its result always finds it), wait, record what came back."""
    job, printer = prepared.job, prepared.printer
    try:
        delivered = await channel.print_and_wait(printer.address, job, timeout)
    except ChannelUnavailable as error:
        log.warning("label job %s not sent: %s", job.job_id, error)
        delivered = None
    if delivered is None:
        async with db.transaction() as conn:
            await repo.fail_job(
                conn,
                job.job_id,
                ErrorCode.PRINTER_NOT_CONNECTED.value,
                PrinterState.OFFLINE.value,
                f"no answer from station {printer.station} within {timeout:g} s",
            )
        raise DomainError(ErrorCode.PRINTER_NOT_CONNECTED, printer_error_data(printer.printer_id, "offline"))
    result = delivered.result
    async with db.transaction() as conn:
        await record_result(conn, result, delivered.message_id, delivered.station)
    if result.status is not PrintStatus.PRINTED:
        update = result_update(result)
        log.info(
            "label job %s on %s failed: %s (%s)",
            job.job_id,
            printer.printer_id,
            update.error_code,
            result.printer_state,
        )
        raise DomainError(
            failure_code(result.error_code, result.printer_state),
            printer_error_data(printer.printer_id, result.printer_state.value),
            result.detail,
        )
    printed_at = result.print_time or db.now()
    return {
        "label_type": job.label_type.value,
        "serial_number": prepared.serial_number,
        "lot_number": prepared.lot_number,
        "printer_id": printer.printer_id,
        "print_time": db.local(printed_at).isoformat(),
        "job_id": str(job.job_id),
    }
