"""Printer registry use cases: register, change, list; every change audited in its transaction."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.audit.trail import record_audit
from cloud_api.domain.errors import DomainError
from cloud_api.labels import repository as repo
from cloud_api.labels.domain import Printer, PrinterFields, PrinterIn, check_transport
from mes_contracts.errors import ErrorCode

log = logging.getLogger(__name__)


async def create_printer(conn: AsyncConnection, printer: PrinterIn, actor: str) -> Printer:
    created = await repo.insert_printer(conn, printer)
    if created is None:
        raise DomainError(ErrorCode.DUPLICATE_PRINTER, {"printer_id": printer.printer_id})
    await record_audit(
        conn,
        actor=actor,
        action="printer.create",
        entity="printer",
        entity_key=printer.printer_id,
        new=created.public(),
    )
    log.info("printer %s registered at %s by %s", created.printer_id, created.station, actor)
    return created


async def update_printer(conn: AsyncConnection, printer_id: str, fields: PrinterFields, actor: str) -> Printer:
    current = await repo.lock_printer(conn, printer_id)
    if current is None:
        raise DomainError(ErrorCode.PRINTER_NOT_FOUND, {"printer_id": printer_id})
    changes = fields.model_dump(mode="json", exclude_unset=True)
    if "purposes" in changes:
        changes["purposes"] = sorted(set(changes["purposes"] or []))
    if any(value is None for key, value in changes.items() if key not in ("host", "serial_port", "description")):
        raise DomainError(ErrorCode.INVALID_REQUEST, {"errors": ["only host, serial_port, description may be null"]})
    old = current.public()
    merged = {**old, **changes}
    try:
        check_transport(merged["transport"], merged["host"], merged["serial_port"])
    except ValueError as error:
        raise DomainError(ErrorCode.INVALID_REQUEST, {"errors": [str(error)]}) from error
    changed = {key: value for key, value in changes.items() if old.get(key) != value}
    if not changed:
        return current
    updated = await repo.update_printer(conn, printer_id, changed)
    await record_audit(
        conn,
        actor=actor,
        action="printer.update",
        entity="printer",
        entity_key=printer_id,
        old={key: old[key] for key in changed},
        new={key: updated.public()[key] for key in changed},
    )
    return updated


async def register_printer(conn: AsyncConnection, printer: PrinterIn, actor: str) -> tuple[Printer, bool]:
    """Create, or bring an existing printer in line with `printer` (the CLI and `mes up`, rerun safely).

    Returns (printer, created).
    """
    current = await repo.lock_printer(conn, printer.printer_id)
    if current is None:
        return await create_printer(conn, printer, actor), True
    fields = PrinterFields.model_validate(printer.model_dump(exclude={"printer_id"}))
    return await update_printer(conn, printer.printer_id, fields, actor), False


async def list_printers(
    conn: AsyncConnection, station: str | None = None, purpose: str | None = None, active: bool | None = None
) -> list[dict[str, Any]]:
    return [p.public() for p in await repo.list_printers(conn, station, purpose, active)]


async def get_printer(conn: AsyncConnection, printer_id: str) -> Printer:
    found = await repo.find_printer(conn, printer_id)
    if found is None:
        raise DomainError(ErrorCode.PRINTER_NOT_FOUND, {"printer_id": printer_id})
    return found
