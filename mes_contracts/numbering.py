"""LOT, serial and work-order number formats (spec §5.3) and the production-date rule for shifts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum


class Shift(StrEnum):
    DAY = "D"
    NIGHT = "N"


PRODUCT_CODE = "WF"
PLANT_CODE = "KR"
LOT_PATTERN = r"(?P<product>[A-Z]{2})-(?P<plant>[A-Z]{2})-(?P<yymmdd>\d{6})(?P<shift>[DN])-(?P<seq>\d{3})"
LOT_RE = re.compile(rf"^{LOT_PATTERN}$")
SERIAL_RE = re.compile(rf"^(?P<lot>{LOT_PATTERN})-(?P<unit>\d{{4}})$")
MAX_LOT_SEQUENCE = 999
MAX_SERIAL_SEQUENCE = 9999


@dataclass(frozen=True, slots=True)
class LotNumber:
    """A parsed LOT number such as WF-KR-251110D-001."""

    product: str
    plant: str
    production_date: date
    shift: Shift
    sequence: int

    def __str__(self) -> str:
        return format_lot_number(self.production_date, self.shift, self.sequence, self.product, self.plant)


def format_lot_number(
    production_date: date, shift: Shift | str, sequence: int, product: str = PRODUCT_CODE, plant: str = PLANT_CODE
) -> str:
    if not 1 <= sequence <= MAX_LOT_SEQUENCE:
        raise ValueError(f"LOT sequence out of range 1..{MAX_LOT_SEQUENCE}: {sequence}")
    return f"{product}-{plant}-{production_date:%y%m%d}{Shift(shift).value}-{sequence:03d}"


def parse_lot_number(text: str) -> LotNumber:
    match = LOT_RE.match(text)
    if match is None:
        raise ValueError(f"not a LOT number: {text!r}")
    produced = datetime.strptime(match["yymmdd"], "%y%m%d").date()
    return LotNumber(match["product"], match["plant"], produced, Shift(match["shift"]), int(match["seq"]))


def is_lot_number(text: str) -> bool:
    try:
        parse_lot_number(text)
    except ValueError:
        return False
    return True


def format_serial_number(lot_number: str, unit: int) -> str:
    if not 1 <= unit <= MAX_SERIAL_SEQUENCE:
        raise ValueError(f"serial sequence out of range 1..{MAX_SERIAL_SEQUENCE}: {unit}")
    return f"{lot_number}-{unit:04d}"


def parse_serial_number(text: str) -> tuple[str, int]:
    match = SERIAL_RE.match(text)
    if match is None:
        raise ValueError(f"not a serial number: {text!r}")
    parse_lot_number(match["lot"])
    return match["lot"], int(match["unit"])


def work_order_prefix(day: date) -> str:
    return f"WO-{day:%Y%m%d}-"


def format_work_order_id(day: date, sequence: int) -> str:
    """WO-YYYYMMDD-NNN: the day's running number of starts, at least three digits."""
    return f"{work_order_prefix(day)}{sequence:03d}"


def production_date(local_now: datetime, shift: Shift | str, day_start_hour: int) -> date:
    """The production day a LOT belongs to: a night shift running past midnight keeps the previous day."""
    if Shift(shift) is Shift.NIGHT and local_now.hour < day_start_hour:
        return local_now.date() - timedelta(days=1)
    return local_now.date()
