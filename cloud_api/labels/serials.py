"""Automatic labels: the LOT label at LOT creation, serial numbers and their labels at the PROC-007 start."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.audit.trail import record_audit
from cloud_api.domain.errors import DomainError
from cloud_api.labels import repository as repo
from cloud_api.labels.domain import station_of_source
from mes_contracts.errors import ErrorCode
from mes_contracts.start import StartRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IssuedSerials:
    serial_numbers: list[str]
    printer_id: str | None  # None: no serial printer registered; the serials exist, no label was queued


async def issue_for_start(
    conn: AsyncConnection, lot_id: int, request: StartRequest, source: str, actor: str | None = None
) -> IssuedSerials:
    """`{LOT}-0001` upward: the request's `serial_count`, else the target quantity minus the failed units.

    One QUEUED SERIAL label job per serial, in order, on the printer named in the request, else the active
    serial printer of the starting station, else the default serial printer. Runs after the run insert, so
    only the one start that won the LOT's PROC-007 run gets here; the unique constraints on serials refuse any
    second issue anyway.
    """
    serials, printer_id, missing = await repo.issue_serials(
        conn, lot_id, request.serial_count, request.worker_id, request.printer_id, station_of_source(source)
    )
    if missing:
        raise DomainError(ErrorCode.PRINTER_NOT_FOUND, {"printer_id": request.printer_id})
    if serials and printer_id is None:
        log.warning(
            "no active serial printer: %s serials of %s issued without labels", len(serials), request.lot_number
        )
    await record_audit(
        conn,
        actor=actor or request.worker_id,
        action="serial.issue",
        entity="lot",
        entity_key=request.lot_number,
        new={
            "count": len(serials),
            "first": serials[0] if serials else None,
            "last": serials[-1] if serials else None,
            "printer_id": printer_id,
            "requested_count": request.serial_count,
        },
    )
    return IssuedSerials(serials, printer_id)


async def queue_lot_label(
    conn: AsyncConnection, lot_id: int, lot_number: str, printer_id: str | None, actor: str
) -> dict[str, Any] | None:
    """FR-LOT-002: the LOT label, queued in the LOT's creation transaction (printed when the station gets it)."""
    job = await repo.queue_lot_label(conn, lot_id, lot_number, printer_id, actor)
    if job is None and printer_id is not None:
        raise DomainError(ErrorCode.PRINTER_NOT_FOUND, {"printer_id": printer_id})
    if job is None:
        log.warning("no active LOT printer: LOT %s created without a label", lot_number)
        return None
    return {"job_id": str(job.job_id), "printer_id": job.printer_id, "status": job.status}
