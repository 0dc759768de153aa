"""Typed rows the read functions of adapters/repository.py return (no dicts): one frozen dataclass per read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime


@dataclass(frozen=True, slots=True)
class ProductModelRow:
    """A product model (`product_models`)."""

    id: int
    model_code: str
    model_name: str


@dataclass(frozen=True, slots=True)
class LotRow:
    """A LOT (`lots`) with its product model's code and name."""

    id: int
    lot_number: str
    product_model_id: int
    target_quantity: int
    shift: str
    production_date: date
    sequence: int
    status: str
    created_by: str
    created_at: datetime
    updated_at: datetime
    model_code: str
    model_name: str


@dataclass(frozen=True, slots=True)
class ProcessRunRow:
    """A LOT-level run of a process (`process_runs`, serial_id NULL), as the LOT detail shows it."""

    id: int
    process_id: str
    work_order_id: str
    sequence_number: int
    status: str
    start_time: datetime
    start_worker_id: str
    complete_time: datetime | None
    complete_worker_id: str | None
    result: str | None
    completion_count: int
