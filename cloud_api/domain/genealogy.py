"""Serial genealogy: what a completion does to the status of the LOT's serials (issue 13). Pure.

Serials exist from the PROC-007 start on (labels/serials.py issues them CREATED). The rules:

* A completion that names a serial (`serial_number` at the top of the record or inside `process_data`, of the
  same LOT) is a *unit-level* result: FAIL → FAILED; PASS at PROC-008 → PASSED; any other PASS → IN_PROGRESS.
* A *LOT-level* result (no serial named) of PROC-007 or PROC-008 applies to every serial of the LOT still open:
  PROC-007 (the labels are on the units) → IN_PROGRESS; a PROC-008 PASS → PASSED.
* A LOT-level FAIL changes no serial: it counts one unit that left the cart (the PROC-007 serial count subtracts
  it) and does not say which; before PROC-007 that unit never got a serial, at PROC-007/008 the station must name
  the serial for it to be marked FAILED.
* LOT-level results of PROC-001..006 change no status; they belong to every serial of the LOT in its history
  (the trace shows them for each serial).

Statuses only move up the rank CREATED < IN_PROGRESS < PASSED < FAILED, so a FAILED serial stays FAILED (rework
is a decision the spec does not make) and several effects in one batch fold into the highest one: the store
applies `SerialEffect`s with "raise to `status` when below it" in one statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

LABEL_PROCESS = "PROC-007"
FINAL_PROCESS = "PROC-008"


class SerialStatus(StrEnum):
    CREATED = "CREATED"
    IN_PROGRESS = "IN_PROGRESS"
    PASSED = "PASSED"
    FAILED = "FAILED"


# Position = rank: a status is only ever replaced by one further right.
STATUS_ORDER: tuple[SerialStatus, ...] = (
    SerialStatus.CREATED,
    SerialStatus.IN_PROGRESS,
    SerialStatus.PASSED,
    SerialStatus.FAILED,
)


def rank(status: SerialStatus) -> int:
    return STATUS_ORDER.index(status) + 1  # 1-based like SQL array_position


@dataclass(frozen=True, slots=True)
class SerialEffect:
    """Raise the named serial (or, when `serial_number` is None, every serial of the LOT) to `status`."""

    status: SerialStatus
    serial_number: str | None
    cause: str

    @property
    def rank(self) -> int:
        return rank(self.status)


def named_serial(record_extra: dict[str, Any] | None, process_data: dict[str, Any]) -> str | None:
    """The serial a completion record names: top-level `serial_number`, else `process_data.serial_number`."""
    for source in (record_extra or {}, process_data):
        value = source.get("serial_number")
        if isinstance(value, str) and value:
            return value
    return None


def serial_effect(process_id: str, verdict: str, serial_number: str | None) -> SerialEffect | None:
    """What one completion does to serial statuses; None when it changes none."""
    cause = f"{process_id} {verdict}"
    if serial_number is not None:
        if verdict == "FAIL":
            return SerialEffect(SerialStatus.FAILED, serial_number, cause)
        done = process_id == FINAL_PROCESS
        return SerialEffect(SerialStatus.PASSED if done else SerialStatus.IN_PROGRESS, serial_number, cause)
    if verdict == "FAIL":
        return None
    if process_id == LABEL_PROCESS:
        return SerialEffect(SerialStatus.IN_PROGRESS, None, cause)
    if process_id == FINAL_PROCESS:
        return SerialEffect(SerialStatus.PASSED, None, cause)
    return None
