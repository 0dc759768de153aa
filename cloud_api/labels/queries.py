"""Read side of labels: what a label shows (LOT or serial), print history, serial detail."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.adapters.database import Database
from cloud_api.domain.errors import DomainError
from cloud_api.labels.rows import LabelSubject
from mes_contracts.errors import ErrorCode
from mes_contracts.labels import LabelType

_SUBJECT = (
    "SELECT l.id AS lot_id, l.lot_number, l.target_quantity, l.production_date, pm.model_name, pm.model_code, "
    "s.id AS serial_id, s.serial_number, s.sequence, s.status AS serial_status, s.created_at AS serial_created_at "
    "FROM lots l JOIN product_models pm ON pm.id = l.product_model_id "
)


async def find_serial(conn: AsyncConnection, serial_number: str) -> LabelSubject | None:
    row = await conn.execute(
        text(_SUBJECT + "JOIN serials s ON s.lot_id = l.id WHERE s.serial_number = :s"), {"s": serial_number}
    )
    found = row.first()
    return LabelSubject(*found) if found else None


async def find_lot(conn: AsyncConnection, lot_number: str) -> LabelSubject | None:
    row = await conn.execute(text(_SUBJECT + "LEFT JOIN serials s ON false WHERE l.lot_number = :n"), {"n": lot_number})
    found = row.first()
    return LabelSubject(*found) if found else None


async def subject(conn: AsyncConnection, serial_number: str | None, lot_number: str | None) -> LabelSubject:
    """The serial (with its LOT) or the LOT a label is about; SERIAL_NOT_FOUND / LOT_NOT_FOUND otherwise."""
    if serial_number is not None:
        found = await find_serial(conn, serial_number)
        if found is None:
            raise DomainError(ErrorCode.SERIAL_NOT_FOUND, {"serial_number": serial_number})
        return found
    if lot_number is None:
        raise DomainError(ErrorCode.INVALID_REQUEST, {"errors": ["serial_number or lot_number is required"]})
    found = await find_lot(conn, lot_number)
    if found is None:
        raise DomainError(ErrorCode.LOT_NOT_FOUND, {"lot_number": lot_number})
    return found


def label_type_of(found: LabelSubject) -> LabelType:
    return LabelType.SERIAL if found.serial_id is not None else LabelType.LOT


def label_date(db: Database, found: LabelSubject) -> date:
    """A LOT label shows the LOT's production date; a serial label the day its serial was issued."""
    if found.serial_created_at is not None:
        return db.local(found.serial_created_at).date()
    return found.production_date


def _iso(db: Database, moment: datetime | None) -> str | None:
    return db.local(moment).isoformat() if moment is not None else None


async def history(
    db: Database,
    conn: AsyncConnection,
    serial_number: str | None,
    lot_number: str | None,
    label_type: LabelType | None = None,
    reprints_only: bool = False,
) -> list[dict[str, Any]]:
    """Prints and reprints of a serial's label, or of a LOT's labels (its LOT label and its serials' labels)."""
    found = await subject(conn, serial_number, lot_number)
    rows = await conn.execute(
        text(
            "SELECT j.job_id, j.label_type, j.label_key, j.printer_id, j.mode, j.reprint, j.reason, j.worker_id, "
            "j.requested_by, j.status, j.printer_state, j.error_code, j.created_at, j.dispatched_at, j.printed_at "
            "FROM label_print_jobs j WHERE "
            "(CASE WHEN CAST(:serial AS bigint) IS NULL THEN j.lot_id = :lot ELSE j.serial_id = :serial END) "
            "AND (CAST(:type AS text) IS NULL OR j.label_type = :type) AND (j.reprint OR NOT :reprints) "
            "ORDER BY j.created_at, j.queue_seq"
        ),
        {
            "serial": found.serial_id,
            "lot": found.lot_id,
            "type": label_type.value if label_type else None,
            "reprints": reprints_only,
        },
    )
    return [
        {
            "job_id": str(r.job_id),
            "label_type": r.label_type,
            "label_key": r.label_key,
            "lot_number": found.lot_number,
            "printer_id": r.printer_id,
            "mode": r.mode,
            "reprint": r.reprint,
            "reason": r.reason,
            "worker_id": r.worker_id,
            "requested_by": r.requested_by,
            "status": r.status,
            "printer_status": r.printer_state,
            "error_code": r.error_code,
            "requested_at": _iso(db, r.created_at),
            "dispatched_at": _iso(db, r.dispatched_at),
            "printed_at": _iso(db, r.printed_at),
        }
        for r in rows
    ]


async def serial_detail(db: Database, conn: AsyncConnection, serial_number: str) -> dict[str, Any]:
    found = await subject(conn, serial_number, None)
    return {
        "serial_number": found.serial_number,
        "lot_number": found.lot_number,
        "sequence": found.sequence,
        "status": found.serial_status,
        "product_model": found.model_name,
        "model_code": found.model_code,
        "created_at": _iso(db, found.serial_created_at),
        "label_history": await history(db, conn, serial_number, None),
    }
