"""What a scan is, by its format (mes_contracts): a LOT number, a serial number or a worker badge."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mes_contracts.numbering import is_lot_number, parse_serial_number
from mes_contracts.workers import is_valid_worker_id


class ScanKind(StrEnum):
    LOT = "lot"
    SERIAL = "serial"
    WORKER = "worker"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Scan:
    kind: ScanKind
    value: str
    lot_number: str | None = None  # the LOT of a LOT or serial scan


def classify(text: str) -> Scan:
    """LOT (WF-KR-251110D-001) and serial (…-0001) first: both are also valid worker ids by character set.

    Scanners add stray whitespace or a prefix-less CR/LF; lower-case from a badge printer is kept (ids are
    case-sensitive), but a lower-case LOT or serial is upper-cased (a keyboard wedge with Caps Lock on).
    """
    value = text.strip()
    upper = value.upper()
    if is_lot_number(upper):
        return Scan(ScanKind.LOT, upper, upper)
    try:
        lot, _unit = parse_serial_number(upper)
    except ValueError:
        pass
    else:
        return Scan(ScanKind.SERIAL, upper, lot)
    if is_valid_worker_id(value):
        return Scan(ScanKind.WORKER, value)
    return Scan(ScanKind.UNKNOWN, value)
