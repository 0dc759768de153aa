"""Trend buckets: parse a bucket width, align a range, choose the rollup, and merge partial statistics (pure).

The trend API answers from the hourly or daily rollups (continuous aggregates on TimescaleDB, refreshed tables on
plain PostgreSQL) whenever the width is a whole number of hours or days, and from the raw rows otherwise. Rows
of a rollup are per station and test point and carry exact sums (count, sum, sum of squares in numeric); a trend
bucket adds them up (and, for 2 h or 7 d, several rollup buckets) and only then divides, so every width and
every path (TimescaleDB, plain PostgreSQL, rollup or raw) gives the same digits. Mean and stddev are rounded to
`DECIMALS` places (half to even) for the answer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Context, Decimal
from enum import StrEnum
from functools import cache
from zoneinfo import ZoneInfo

DECIMALS = 6
MAX_BUCKETS = 5000
# Sums of numeric rows stay exact at this precision (a year of values with 3 decimals needs ~20 digits).
EXACT = Context(prec=40)
ZERO = Decimal(0)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# Buckets of a multiple of hours or days start at local midnight of this Monday (7 d = Monday weeks).
ORIGIN_DAY = date(2000, 1, 3)
_WIDTH = re.compile(r"^\s*(\d{1,4})\s*(m|min|h|d|w)\s*$")
_NAMED = {"minute": "1m", "hour": "1h", "day": "1d", "week": "1w", "hourly": "1h", "daily": "1d"}
_UNIT = {"m": timedelta(minutes=1), "min": timedelta(minutes=1), "h": HOUR, "d": DAY, "w": 7 * DAY}


class Source(StrEnum):
    HOURLY = "hourly"
    DAILY = "daily"
    RAW = "raw"


class BucketError(ValueError):
    """A bucket width or range the trend cannot answer (the message says which)."""


def parse_width(text: str) -> timedelta:
    """`hour`, `day`, `week`, or a number with m/h/d/w (`15m`, `2h`, `7d`); at least one minute."""
    spec = _NAMED.get(text.strip().lower(), text.strip().lower())
    match = _WIDTH.match(spec)
    if match is None:
        raise BucketError(f"bucket {text!r}: expected hour, day, week or e.g. 15m, 2h, 7d")
    width = int(match.group(1)) * _UNIT[match.group(2)]
    if width <= timedelta(0):
        raise BucketError(f"bucket {text!r} must be positive")
    return width


def label(width: timedelta) -> str:
    """The width as the API echoes it: `1d`, `2h`, `15m`."""
    seconds = int(width.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds // 60}m"


def source_for(width: timedelta, zone: ZoneInfo, rollup_zone: str) -> Source:
    """Days from the daily rollup (when its days are the API's days), hours from the hourly one, else raw."""
    if width % DAY == timedelta(0) and zone.key == rollup_zone:
        return Source.DAILY
    if width % HOUR == timedelta(0):
        return Source.HOURLY
    return Source.RAW


@cache
def origin(zone: ZoneInfo) -> datetime:
    return datetime(ORIGIN_DAY.year, ORIGIN_DAY.month, ORIGIN_DAY.day, tzinfo=zone)


def bucket_start(moment: datetime, width: timedelta, zone: ZoneInfo) -> datetime:
    """The start of the bucket holding `moment`: whole local days for day widths, else fixed steps from origin."""
    if width % DAY == timedelta(0):
        days = width // DAY
        local = moment.astimezone(zone).date()
        first = ORIGIN_DAY + timedelta(days=((local - ORIGIN_DAY).days // days) * days)
        return datetime(first.year, first.month, first.day, tzinfo=zone)
    start = origin(zone)
    return start + ((moment - start) // width) * width


def aligned_range(start: datetime, end: datetime, width: timedelta, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """Whole buckets: from the start of `start`'s bucket to the end of the bucket before `end` (exclusive)."""
    if end <= start:
        raise BucketError("'to' must be after 'from'")
    first = bucket_start(start, width, zone)
    last = bucket_start(end - timedelta(microseconds=1), width, zone)
    count = _count(first, last, width) + 1
    if count > MAX_BUCKETS:
        raise BucketError(f"{count} buckets of {label(width)}; at most {MAX_BUCKETS}: choose a wider bucket")
    return first, _next(last, width, zone)


def _count(first: datetime, last: datetime, width: timedelta) -> int:
    if width % DAY == timedelta(0):
        return (last.date() - first.date()).days // (width // DAY)
    return (last - first) // width


def _next(start: datetime, width: timedelta, zone: ZoneInfo) -> datetime:
    if width % DAY == timedelta(0):
        day = start.date() + timedelta(days=width // DAY)
        return datetime(day.year, day.month, day.day, tzinfo=zone)
    return start + width


@dataclass(frozen=True, slots=True)
class Partial:
    """One row of a rollup or of the raw aggregate: one bucket, station and test point. The sums are exact
    (numeric in the database, Decimal here)."""

    bucket: datetime
    station: str | None
    test_point_id: str | None
    n: int
    sum_value: Decimal | None
    sum_squares: Decimal | None
    min_value: float | None
    max_value: float | None
    out_of_limit: int
    lsl: float | None
    usl: float | None


@dataclass(frozen=True, slots=True)
class BucketStats:
    bucket: datetime
    n: int
    mean: float | None
    stddev: float | None
    min_value: float | None
    max_value: float | None
    out_of_limit: int
    lsl: float | None
    usl: float | None


def merge(bucket: datetime, parts: Sequence[Partial]) -> BucketStats:
    """Pooled statistics: n, mean and sample stddev from the exact sums (no rounding until the end), extremes,
    counts. Exact arithmetic makes the answer independent of how the rows were split or ordered."""
    n = sum(p.n for p in parts)
    total = _exact_sum(p.sum_value for p in parts)
    squares = _exact_sum(p.sum_squares for p in parts)
    mean = EXACT.divide(total, n) if n else None
    stddev = None
    if n > 1:
        # The variance is exact (to 40 digits); its square root in binary floating point is correctly rounded
        # (IEEE 754), so still the same digits everywhere, and ten times cheaper than a Decimal root.
        spread = EXACT.subtract(squares, EXACT.divide(EXACT.multiply(total, total), n))
        stddev = math.sqrt(max(float(EXACT.divide(spread, n - 1)), 0.0))
    return BucketStats(
        bucket=bucket,
        n=n,
        mean=_round(mean),
        stddev=None if stddev is None else round(stddev, DECIMALS),
        min_value=_lowest(p.min_value for p in parts),
        max_value=_highest(p.max_value for p in parts),
        out_of_limit=sum(p.out_of_limit for p in parts),
        lsl=_lowest(p.lsl for p in parts),
        usl=_highest(p.usl for p in parts),
    )


def rebucket(parts: Iterable[Partial], width: timedelta, zone: ZoneInfo) -> list[BucketStats]:
    """Group partial rows into trend buckets of `width` (in time order) and merge each."""
    groups: dict[datetime, list[Partial]] = {}
    starts: dict[datetime, datetime] = {}  # rows of one rollup bucket share their trend bucket
    # A fixed order (the float extremes do not care, but the answer's order of work stays reproducible).
    for part in sorted(parts, key=lambda p: (p.bucket, p.station or "", p.test_point_id or "")):
        start = starts.get(part.bucket)
        if start is None:
            start = starts[part.bucket] = bucket_start(part.bucket, width, zone)
        groups.setdefault(start, []).append(part)
    return [merge(start, groups[start]) for start in sorted(groups)]


def _exact_sum(values: Iterable[Decimal | None]) -> Decimal:
    total = ZERO
    for value in values:
        if value is not None:
            total = EXACT.add(total, value)
    return total


def _lowest(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _highest(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _round(value: Decimal | None) -> float | None:
    return None if value is None else float(round(value, DECIMALS))
