"""Start (착공) decision (spec §3.4.1): may this start happen, which step it is, what it changes. Pure.

Both ways of carrying out a start (services/process_start.py: the locked path and the one-statement fast path)
call `decide_start` on the store's view of the LOT (adapters/start_sql.py reads it as a `LotForStart`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, tzinfo

from cloud_api.domain.errors import DomainError
from cloud_api.domain.lots import LotStatus, status_after_start
from cloud_api.domain.sequencing import RunSnapshot, check_start_allowed, resolve_step
from cloud_api.domain.workers import require_active_worker
from mes_contracts.errors import ErrorCode
from mes_contracts.route import ProcessStep
from mes_contracts.start import StartRequest

Transition = tuple[LotStatus, LotStatus, str]  # old status, new status, reason ("PROC-001 start")


@dataclass(frozen=True, slots=True)
class RunRow:
    """A LOT-level run of a process, as far as the start rules care."""

    process_id: str
    status: str
    work_order_id: str
    start_time: datetime


@dataclass(frozen=True, slots=True)
class LotForStart:
    """The store's view of a start: the LOT, whether the worker is active, and the LOT's runs."""

    lot_id: int
    status: LotStatus
    worker_active: bool
    runs: tuple[RunRow, ...]


@dataclass(frozen=True, slots=True)
class NewRun:
    """The run an allowed start inserts; its work-order number (prefix + the day's counter) comes from the store."""

    lot_id: int
    process_id: str
    sequence_number: int
    start_time: datetime
    worker_id: str
    message_id: uuid.UUID | None
    source: str
    work_day: date
    prefix: str  # "WO-20260105-"


@dataclass(frozen=True, slots=True)
class StartDecision:
    """An allowed start: its route step, the LOT's status it was decided on, and the LOT's status change."""

    step: ProcessStep
    lot_status: LotStatus
    transition: Transition | None


def decide_start(request: StartRequest, lot: LotForStart | None, zone: tzinfo, lang: str) -> StartDecision:
    """The start's outcome; DomainError (LOT_NOT_FOUND, WORKER_NOT_FOUND, sequence errors) when refused.
    `zone`: the plant's time zone, in which a refusal shows an existing run's start time."""
    if lot is None:
        raise DomainError(ErrorCode.LOT_NOT_FOUND, {"lot_number": request.lot_number})
    step = resolve_step(request.process_id, request.process_name, request.lot_number, lang)
    require_active_worker(request.worker_id, lot.worker_active)
    check_start_allowed(request.lot_number, lot.status, step, _snapshots(lot.runs, zone), lang)
    new_status = status_after_start(lot.status)
    transition = (lot.status, new_status, f"{step.process_id} start") if new_status is not None else None
    return StartDecision(step, lot.status, transition)


def _snapshots(runs: tuple[RunRow, ...], zone: tzinfo) -> dict[str, RunSnapshot]:
    return {
        run.process_id: RunSnapshot(run.status, run.work_order_id, run.start_time.astimezone(zone).isoformat())
        for run in runs
    }
