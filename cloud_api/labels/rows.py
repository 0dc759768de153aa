"""Typed rows the label reads return (no dicts): what a label is about (labels/queries.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime


@dataclass(frozen=True, slots=True)
class LabelSubject:
    """A LOT, or a serial with its LOT: what a label shows. The serial fields are None for a LOT."""

    lot_id: int
    lot_number: str
    target_quantity: int
    production_date: date
    model_name: str
    model_code: str
    serial_id: int | None
    serial_number: str | None
    sequence: int | None
    serial_status: str | None
    serial_created_at: datetime | None

    @property
    def label_key(self) -> str:
        """What the label is keyed by: the serial number, or the LOT number for a LOT label."""
        return self.serial_number if self.serial_number is not None else self.lot_number
