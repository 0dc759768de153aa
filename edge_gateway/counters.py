"""Pickup counters shown by the local status endpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(slots=True)
class PickupCounters:
    """Totals since start; `in_flight` and `pending` are gauges filled in by the pickup."""

    picked_up: int = 0
    completed: int = 0
    errored: int = 0
    retried: int = 0
    duplicates: int = 0  # completed/ with a `.duplicate.log`: the centre already had this exact content
    reexamined: int = 0  # error/ files that changed after the move and went back to pending/
    in_flight: int = 0
    pending: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
