"""The production calendar of the demo data: working days, LOTs per day, and when each process of a LOT runs.

500 units a day = five LOTs of 100 (three on the day shift, two on the night shift), Monday to Friday except
Korea's fixed public holidays: ~255 working days a year, ~765 in three years. A LOT moves through the eight
stations as a pipeline: LOT k of a shift reaches process p at shift start + (k + p - 1) × SLOT, so every station
works on one LOT at a time. Times are factory time (KST).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

KST = timezone(timedelta(hours=9), "KST")
UNITS_PER_LOT = 100
DAY_SHIFT_LOTS = 3
NIGHT_SHIFT_LOTS = 2
SLOT = timedelta(minutes=80)  # one station's time for one LOT (the performance test's 100 × 48 s is the longest)
DAY_SHIFT_START = time(8, 0)
NIGHT_SHIFT_START = time(20, 0)
# Seconds per unit at each station (the LOT's 100 units one after another inside the slot).
CYCLE_SECONDS = {
    "PROC-001": 15,
    "PROC-002": 40,
    "PROC-003": 20,
    "PROC-004": 25,
    "PROC-005": 40,
    "PROC-006": 48,
    "PROC-007": 8,
    "PROC-008": 20,
}
# Fixed-date public holidays (the lunar ones move; leaving them out keeps ~255 working days a year).
HOLIDAYS = frozenset({(1, 1), (3, 1), (5, 5), (6, 6), (8, 15), (10, 3), (10, 9), (12, 25)})
CLOSE_AFTER = timedelta(days=3)  # a manager closes a completed LOT when it ships


def is_working_day(day: date) -> bool:
    return day.weekday() < 5 and (day.month, day.day) not in HOLIDAYS


def working_days(first: date, last: date) -> list[date]:
    days, day = [], first
    while day <= last:
        if is_working_day(day):
            days.append(day)
        day += timedelta(days=1)
    return days


def calendar(today: date, years: float | None, days: int | None) -> list[date]:
    """Working days ending today: the last `days` of them, or those of the last `years` years. Today is always
    one (a weekend or holiday becomes an overtime day), so the live view has a production day in progress."""
    if days is not None:
        found: list[date] = [today]
        day = today - timedelta(days=1)
        while len(found) < days:
            if is_working_day(day):
                found.append(day)
            day -= timedelta(days=1)
        return sorted(found)
    span = timedelta(days=round(365.25 * (years or 3.0)))
    return sorted({*working_days(today - span + timedelta(days=1), today), today})


@dataclass(frozen=True, slots=True)
class LotPlan:
    """One LOT: its production day, shift, number within the day and global index (drives component lots)."""

    production_date: date
    shift: str
    sequence: int
    index: int  # 0, 1, 2 … over the whole run
    day_index: int  # position of the production day in the run (drift of the characteristics)
    slot_in_shift: int

    def process_start(self, route_position: int) -> datetime:
        """When process `route_position` (1..8) starts for this LOT."""
        start = DAY_SHIFT_START if self.shift == "D" else NIGHT_SHIFT_START
        base = datetime.combine(self.production_date, start, KST)
        return base + SLOT * (self.slot_in_shift + route_position - 1)

    @property
    def created_at(self) -> datetime:
        return self.process_start(1) - timedelta(minutes=25)


def lots_of_day(day: date, day_index: int, first_sequence: int, first_index: int) -> list[LotPlan]:
    plans = []
    for k in range(DAY_SHIFT_LOTS + NIGHT_SHIFT_LOTS):
        night = k >= DAY_SHIFT_LOTS
        plans.append(
            LotPlan(
                day,
                "N" if night else "D",
                first_sequence + k,
                first_index + k,
                day_index,
                k - DAY_SHIFT_LOTS if night else k,
            )
        )
    return plans
