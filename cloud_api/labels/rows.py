"""Typed rows the label reads return (no dicts): what a label is about (labels/queries.py) and the label jobs
labels/repository.py inserts or updates."""

from __future__ import annotations

import uuid
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


@dataclass(frozen=True, slots=True)
class InsertedJob:
    """A label job just inserted (labels/repository.insert_job)."""

    job_id: uuid.UUID
    created_at: datetime


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """A LOT label job just queued at LOT creation (labels/repository.queue_lot_label)."""

    job_id: uuid.UUID
    printer_id: str
    status: str


@dataclass(frozen=True, slots=True)
class JobAfterResult:
    """A label job as it is after a print result was applied (labels/repository.apply_result)."""

    job_id: uuid.UUID
    printer_id: str
    label_type: str
    label_key: str
    status: str
    target: str | None
