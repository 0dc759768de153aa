"""LOT use cases: create (FR-LOT-001, concurrency-safe numbering) and close."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.adapters import repository as repo
from cloud_api.adapters.database import Database
from cloud_api.audit.trail import record_audit
from cloud_api.domain.errors import DomainError
from cloud_api.domain.lots import LotStatus, can_transition
from cloud_api.labels.serials import queue_lot_label
from mes_contracts.errors import ErrorCode
from mes_contracts.labels import PRINTER_ID_PATTERN
from mes_contracts.numbering import (
    MAX_LOT_SEQUENCE,
    Shift,
    format_lot_number,
    parse_lot_number,
    production_date,
)


class CreateLot(BaseModel):
    product_model: str = Field(default="WF-WAIST-01", min_length=1, max_length=100)
    target_quantity: int = Field(default=100, ge=1, le=9999)
    shift: Shift
    lot_number: str | None = Field(default=None, description="Only to register a number made elsewhere")
    printer_id: str | None = Field(
        default=None, pattern=PRINTER_ID_PATTERN, description="Printer of the LOT label; default: the LOT label printer"
    )


async def create_lot(db: Database, conn: AsyncConnection, command: CreateLot, actor: str) -> dict[str, Any]:
    model = await repo.find_product_model(conn, command.product_model)
    if model is None:
        raise DomainError(ErrorCode.PRODUCT_MODEL_NOT_FOUND, {"product_model": command.product_model})
    if command.lot_number is not None:
        lot_number, day, shift, sequence = await _explicit_number(conn, command.lot_number)
    else:
        day = production_date(db.local(db.now()), command.shift, db.shift_day_start_hour)
        shift = command.shift
        sequence = await repo.next_daily_value(conn, "lot_number_sequences", "production_date", day)
        if sequence > MAX_LOT_SEQUENCE:
            raise DomainError(ErrorCode.LOT_SEQUENCE_EXHAUSTED, {"production_date": day.isoformat()})
        lot_number = format_lot_number(day, shift, sequence)
    row = await conn.execute(
        text(
            "INSERT INTO lots (lot_number, product_model_id, target_quantity, shift, production_date, "
            "sequence, status, created_by) VALUES (:n, :m, :q, :s, :d, :seq, 'CREATED', :actor) "
            "ON CONFLICT (lot_number) DO NOTHING RETURNING id, created_at"
        ),
        {
            "n": lot_number,
            "m": model.id,
            "q": command.target_quantity,
            "s": shift.value,
            "d": day,
            "seq": sequence,
            "actor": actor,
        },
    )
    created = row.first()
    if created is None:
        raise DomainError(ErrorCode.DUPLICATE_LOT, {"lot_number": lot_number})
    lot_id, created_at = created
    await repo.record_lot_status(conn, lot_id, None, LotStatus.CREATED, actor)
    data = {
        "lot_number": lot_number,
        "product_model": model.model_name,
        "model_code": model.model_code,
        "target_quantity": command.target_quantity,
        "shift": shift.value,
        "production_date": day.isoformat(),
        "status": LotStatus.CREATED.value,
        "created_date": day.isoformat(),
        "created_at": db.local(created_at).isoformat(),
    }
    created_data = dict(data)
    data["label"] = await queue_lot_label(conn, lot_id, lot_number, command.printer_id, actor)
    # Last: the audit insert takes the chain lock, held until commit.
    await record_audit(conn, actor=actor, action="lot.create", entity="lot", entity_key=lot_number, new=created_data)
    return data


async def _explicit_number(conn: AsyncConnection, lot_number: str) -> tuple[str, Any, Shift, int]:
    try:
        parsed = parse_lot_number(lot_number)
    except ValueError as error:
        raise DomainError(ErrorCode.INVALID_REQUEST, {"lot_number": lot_number}, str(error)) from error
    await repo.raise_lot_sequence(conn, parsed.production_date, parsed.sequence)
    return lot_number, parsed.production_date, parsed.shift, parsed.sequence


async def close_lot(conn: AsyncConnection, lot_number: str, actor: str, reason: str | None) -> dict[str, Any]:
    lot = await repo.lock_lot(conn, lot_number)
    if lot is None:
        raise DomainError(ErrorCode.LOT_NOT_FOUND, {"lot_number": lot_number})
    current = LotStatus(lot.status)
    if not can_transition(current, LotStatus.CLOSED):
        raise DomainError(ErrorCode.INVALID_LOT_STATE, {"lot_number": lot_number, "lot_status": current.value})
    await repo.set_lot_status(conn, lot.id, current, LotStatus.CLOSED, actor, reason)
    await record_audit(
        conn,
        actor=actor,
        action="lot.close",
        entity="lot",
        entity_key=lot_number,
        old={"status": current.value},
        new={"status": LotStatus.CLOSED.value},
        reason=reason,
    )
    return {"lot_number": lot_number, "status": LotStatus.CLOSED.value, "previous_status": current.value}
