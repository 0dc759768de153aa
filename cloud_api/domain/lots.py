"""LOT life cycle: CREATED → IN_PROGRESS → COMPLETED → CLOSED (FR-LOT-003)."""

from __future__ import annotations

from enum import StrEnum

from mes_contracts.route import LAST_PROCESS


class LotStatus(StrEnum):
    CREATED = "CREATED"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    CLOSED = "CLOSED"


ALLOWED_TRANSITIONS: dict[LotStatus, frozenset[LotStatus]] = {
    LotStatus.CREATED: frozenset({LotStatus.IN_PROGRESS, LotStatus.CLOSED}),
    LotStatus.IN_PROGRESS: frozenset({LotStatus.COMPLETED, LotStatus.CLOSED}),
    LotStatus.COMPLETED: frozenset({LotStatus.CLOSED}),
    LotStatus.CLOSED: frozenset(),
}
ACTIVE_STATUSES = frozenset({LotStatus.CREATED, LotStatus.IN_PROGRESS})


def can_transition(current: LotStatus, target: LotStatus) -> bool:
    return target in ALLOWED_TRANSITIONS[current]


def status_after_start(current: LotStatus) -> LotStatus | None:
    """The first start moves a new LOT into production; later starts change nothing."""
    return LotStatus.IN_PROGRESS if current is LotStatus.CREATED else None


def status_after_completion(current: LotStatus, process_id: str) -> LotStatus | None:
    """Completion of the last process (PROC-008) completes the LOT."""
    if process_id == LAST_PROCESS.process_id and current is LotStatus.IN_PROGRESS:
        return LotStatus.COMPLETED
    return None
