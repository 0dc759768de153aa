"""Where a measurement batch's samples belong, decided from the ids the database knows (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from cloud_api.domain.errors import DomainError
from mes_contracts.errors import ErrorCode


@dataclass(frozen=True, slots=True)
class KnownIds:
    """What the database said about the batch's LOT number and serial number (None: not found)."""

    lot_id: int | None
    serial_id: int | None
    serial_lot_id: int | None


@dataclass(frozen=True, slots=True)
class Owner:
    lot_id: int
    serial_id: int | None


def decide_owner(lot_number: str, serial_number: str | None, known: KnownIds) -> Owner:
    """The LOT must exist; a serial, when named, must exist and belong to that LOT (a curve of another LOT's
    unit filed under this one would be traced to the wrong LOT for ever)."""
    if known.lot_id is None:
        raise DomainError(ErrorCode.LOT_NOT_FOUND, {"lot_number": lot_number})
    if serial_number is None:
        return Owner(known.lot_id, None)
    if known.serial_id is None:
        raise DomainError(ErrorCode.SERIAL_NOT_FOUND, {"serial_number": serial_number})
    if known.serial_lot_id != known.lot_id:
        raise DomainError(
            ErrorCode.INVALID_MEASUREMENT_DATA,
            {"serial_number": serial_number, "lot_number": lot_number},
            "the serial belongs to another LOT",
        )
    return Owner(known.lot_id, known.serial_id)
