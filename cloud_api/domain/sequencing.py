"""Process-order rules for a start (FR-PROC-001/003): which start is allowed, and why not."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cloud_api.domain.errors import DomainError
from cloud_api.domain.lots import ACTIVE_STATUSES, LotStatus
from mes_contracts.errors import ErrorCode, required_action
from mes_contracts.route import ProcessStep, find_step, previous_step


@dataclass(frozen=True, slots=True)
class RunSnapshot:
    """What the rules need to know about an existing run of a process for the LOT."""

    status: str
    work_order_id: str
    start_time_iso: str


def resolve_step(process_id: str, process_name: str, lot_number: str, lang: str) -> ProcessStep:
    step = find_step(process_id)
    if step is None:
        raise DomainError(
            ErrorCode.INVALID_PROCESS_SEQUENCE,
            {"lot_number": lot_number, "process_id": process_id},
            f"unknown process {process_id}",
        )
    if process_name not in (step.name_ko, step.name_en):
        raise DomainError(
            ErrorCode.INVALID_REQUEST,
            {"process_id": process_id, "process_name": process_name, "expected_process_name": step.name(lang)},
            "process_name does not match process_id",
        )
    return step


def check_start_allowed(
    lot_number: str,
    lot_status: LotStatus,
    step: ProcessStep,
    runs: Mapping[str, RunSnapshot],
    lang: str = "ko",
) -> None:
    """Raise DomainError when the start breaks the route; return quietly when it is allowed."""
    if lot_status not in ACTIVE_STATUSES:
        raise DomainError(
            ErrorCode.INVALID_PROCESS_SEQUENCE,
            {"lot_number": lot_number, "current_process": step.name(lang), "lot_status": lot_status.value},
            "LOT is no longer in production",
        )
    existing = runs.get(step.process_id)
    if existing is not None:
        raise DomainError(ErrorCode.DUPLICATE_START, _duplicate_data(lot_number, step, existing, lang))
    previous = previous_step(step.process_id)
    if previous is not None:
        previous_run = runs.get(previous.process_id)
        if previous_run is None or previous_run.status != "COMPLETED":
            raise DomainError(
                ErrorCode.PREVIOUS_PROCESS_NOT_COMPLETED,
                {
                    "lot_number": lot_number,
                    "current_process": step.name(lang),
                    "previous_process": previous.name(lang),
                    "required_action": required_action(previous.name(lang), lang),
                },
            )


def _duplicate_data(lot_number: str, step: ProcessStep, run: RunSnapshot, lang: str) -> dict[str, Any]:
    return {
        "lot_number": lot_number,
        "process_id": step.process_id,
        "process_name": step.name(lang),
        "work_order_id": run.work_order_id,
        "start_time": run.start_time_iso,
        "run_status": run.status,
    }
