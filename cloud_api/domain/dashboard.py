"""Today's board (FR-DASH-001/002, issue 13): the production day's time window, yields and a LOT's place. Pure.

A production day starts at MES_SHIFT_DAY_START_HOUR local time and lasts 24 h; the day shift (D) is its first
12 hours, the night shift (N) the other 12 (the same rule that numbers LOTs: a night LOT made after midnight
belongs to the previous day).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

from mes_contracts.route import ROUTE

SHIFT_HOURS = 12


@dataclass(frozen=True, slots=True)
class Window:
    """Half-open time range [start, end) of a production day or one of its shifts."""

    production_date: date
    shift: str | None
    start: datetime
    end: datetime

    def elapsed_hours(self, now: datetime) -> float:
        """Hours of the window already past (the whole window once it is over); never below one minute."""
        until = min(max(now, self.start), self.end)
        return max((until - self.start).total_seconds() / 3600, 1 / 60)


def production_day_of(local_now: datetime, day_start_hour: int) -> date:
    """The production day a local moment belongs to: before the start hour it is still the previous day."""
    if local_now.hour < day_start_hour:
        return local_now.date() - timedelta(days=1)
    return local_now.date()


def window(day: date, shift: str | None, day_start_hour: int, zone: tzinfo) -> Window:
    """The production day `day` (shift None), or its D or N shift, as a window in the factory's zone."""
    start = datetime.combine(day, time(day_start_hour), zone)
    end = datetime.combine(day + timedelta(days=1), time(day_start_hour), zone)
    if shift == "D":
        end = start + timedelta(hours=SHIFT_HOURS)
    elif shift == "N":
        start = start + timedelta(hours=SHIFT_HOURS)
    return Window(day, shift, start, end)


def yield_of(passed: int, total: int) -> float | None:
    """A yield as a fraction rounded to 4 places; None when nothing was tested (0/0 is no yield, not 0 %)."""
    return round(passed / total, 4) if total else None


def rolled_yield(per_process: list[float | None]) -> float | None:
    """Overall first-pass yield: the product of the processes' first-pass yields (rolled throughput yield),
    over the processes that tested something in the window; None when none did."""
    known = [value for value in per_process if value is not None]
    if not known:
        return None
    product = 1.0
    for value in known:
        product *= value
    return round(product, 4)


@dataclass(frozen=True, slots=True)
class Place:
    """Where a LOT is on the route: its current process (None when all are done), whether that process is
    running, and how many processes are completed."""

    current_process: str | None
    running: bool
    completed: int

    @property
    def percent(self) -> int:
        return round(100 * self.completed / len(ROUTE))


def place_of(completed: frozenset[str], started: frozenset[str]) -> Place:
    """The first process of the route not completed is the LOT's current one (running when started)."""
    done = sum(1 for step in ROUTE if step.process_id in completed)
    for step in ROUTE:
        if step.process_id not in completed:
            return Place(step.process_id, step.process_id in started, done)
    return Place(None, False, done)
