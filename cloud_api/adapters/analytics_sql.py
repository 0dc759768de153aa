"""Reads of the measurement analytics (issue 14): rollups, raw measurements, sample curves. Typed rows only.

The same SQL on TimescaleDB and plain PostgreSQL: migration 0010 gives both the names `measurement_hourly` and
`measurement_daily` (continuous aggregates there, views over refreshed tables here) with the same columns.
Optional filters are appended as fixed fragments (never `:x IS NULL OR …`, which keeps the planner from pushing
them into a continuous aggregate's real-time part).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.domain.buckets import Partial, Source

STATS = "n, sum_value, sum_squares, min_value, max_value, out_of_limit, lsl, usl"
# The rollups' aggregate (migration 0010), on the raw rows: numeric sums, exact in any order.
RAW_STATS = (
    "count(value) AS n, sum(value::numeric) AS sum_value, sum(value::numeric * value::numeric) AS sum_squares, "
    "min(value) AS min_value, "
    "max(value) AS max_value, count(*) FILTER (WHERE value < lower_limit OR value > upper_limit) AS out_of_limit, "
    "min(lower_limit) AS lsl, max(upper_limit) AS usl"
)


@dataclass(frozen=True, slots=True)
class TrendFilter:
    process_id: str
    characteristic: str
    test_point_id: str | None
    station: str | None
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class SpecRow:
    """The latest limits and unit of a characteristic (what the trend's chart draws as the spec)."""

    unit: str | None
    target: float | None
    tolerance: float | None
    lower_limit: float | None
    upper_limit: float | None


@dataclass(frozen=True, slots=True)
class MeasurementRow:
    time: datetime
    process_id: str
    station: str | None
    serial_number: str | None
    test_point_id: str | None
    characteristic: str
    value: float | None
    unit: str | None
    target: float | None
    tolerance: float | None
    lower_limit: float | None
    upper_limit: float | None
    result: str | None


@dataclass(frozen=True, slots=True)
class SerialRef:
    id: int
    lot_id: int
    serial_number: str


@dataclass(frozen=True, slots=True)
class SampleRow:
    time: datetime
    value: float
    unit: str | None
    test_point_id: str | None


def _filters(f: TrendFilter, time_column: str) -> tuple[str, dict[str, object]]:
    clauses = [f"process_id = :p AND characteristic = :c AND {time_column} >= :start AND {time_column} < :end"]
    params: dict[str, object] = {"p": f.process_id, "c": f.characteristic, "start": f.start, "end": f.end}
    if f.test_point_id is not None:
        clauses.append("test_point_id = :tp")
        params["tp"] = f.test_point_id
    if f.station is not None:
        clauses.append("station = :st")
        params["st"] = f.station
    return " AND ".join(clauses), params


async def rollup_zone(conn: AsyncConnection) -> str:
    """The zone whose days the daily rollup uses (MES_TIMEZONE when migration 0010 ran)."""
    return str((await conn.execute(text("SELECT timezone FROM measurement_rollup_settings"))).scalar_one())


# Trend buckets in SQL: whole local days counted from a Monday (date_bin on the factory's wall clock), or fixed
# steps from the origin instant; domain/buckets.bucket_start computes the same starts.
DAY_BIN = (
    "(date_bin(CAST(:width AS interval), {t} AT TIME ZONE :zone, CAST(:origin_local AS timestamp)) AT TIME ZONE :zone)"
)
STEP_BIN = "date_bin(CAST(:width AS interval), {t}, CAST(:origin AS timestamptz))"
# Summing the exact (numeric) sums of the rows of one trend bucket: the same digits in any order.
MERGED = (
    "CAST(sum(n) AS bigint), sum(sum_value), sum(sum_squares), min(min_value), max(max_value), "
    "CAST(sum(out_of_limit) AS bigint), min(lsl), max(usl)"
)


def _bins(params: dict[str, object], width: timedelta, origin: datetime, by_day: bool) -> str:
    params.update(
        {"width": width, "zone": str(origin.tzinfo), "origin_local": origin.replace(tzinfo=None), "origin": origin}
    )
    return DAY_BIN if by_day else STEP_BIN


async def rollup_partials(
    conn: AsyncConnection, source: Source, f: TrendFilter, width: timedelta, origin: datetime
) -> list[Partial]:
    """The hourly or daily rollup's rows in [start, end) added up per trend bucket (all stations and test points
    the filter lets through): one row per bucket with data."""
    view = "measurement_daily" if source is Source.DAILY else "measurement_hourly"
    where, params = _filters(f, "bucket")
    bucket = _bins(params, width, origin, source is Source.DAILY).format(t="bucket")
    sql = (
        f"SELECT {bucket} AS b, NULL, NULL, {MERGED} FROM (SELECT {STATS}, bucket FROM {view} WHERE {where}) r "
        "GROUP BY 1 ORDER BY 1"
    )
    return [Partial(*row) for row in await conn.execute(text(sql), params)]


async def raw_partials(
    conn: AsyncConnection, f: TrendFilter, width: timedelta, origin: datetime, by_day: bool
) -> list[Partial]:
    """The same statistics from the raw rows, per trend bucket."""
    where, params = _filters(f, "time")
    bucket = _bins(params, width, origin, by_day).format(t="time")
    sql = f"SELECT {bucket} AS b, NULL, NULL, {RAW_STATS} FROM measurements WHERE {where} GROUP BY 1 ORDER BY 1"
    return [Partial(*row) for row in await conn.execute(text(sql), params)]


async def latest_spec(conn: AsyncConnection, f: TrendFilter) -> SpecRow | None:
    where, params = _filters(f, "time")
    sql = (
        "SELECT unit, target, tolerance, lower_limit, upper_limit FROM measurements "
        f"WHERE {where} ORDER BY time DESC LIMIT 1"
    )
    row = (await conn.execute(text(sql), params)).first()
    return SpecRow(*row) if row else None


async def find_serial(conn: AsyncConnection, serial_number: str) -> SerialRef | None:
    row = (
        await conn.execute(
            text("SELECT id, lot_id, serial_number FROM serials WHERE serial_number = :s"), {"s": serial_number}
        )
    ).first()
    return SerialRef(*row) if row else None


async def find_lot_id(conn: AsyncConnection, lot_number: str) -> int | None:
    row = (await conn.execute(text("SELECT id FROM lots WHERE lot_number = :l"), {"l": lot_number})).first()
    return int(row[0]) if row else None


async def measurements_of(
    conn: AsyncConnection, lot_id: int, serial_id: int | None, process_id: str | None, limit: int
) -> list[MeasurementRow]:
    """A LOT's values, or a serial's: its own (unit-level) rows and its LOT's LOT-level rows; time order."""
    clauses = ["m.lot_id = :lot"]
    params: dict[str, object] = {"lot": lot_id, "limit": limit}
    if serial_id is not None:
        clauses.append("(m.serial_id = :sid OR m.serial_id IS NULL)")
        params["sid"] = serial_id
    if process_id is not None:
        clauses.append("m.process_id = :p")
        params["p"] = process_id
    sql = (
        "SELECT m.time, m.process_id, m.station, s.serial_number, m.test_point_id, m.characteristic, m.value, "
        "m.unit, m.target, m.tolerance, m.lower_limit, m.upper_limit, m.result "
        "FROM measurements m LEFT JOIN serials s ON s.id = m.serial_id "
        f"WHERE {' AND '.join(clauses)} "
        "ORDER BY m.time, m.process_id, m.test_point_id NULLS FIRST, m.characteristic LIMIT :limit"
    )
    return [MeasurementRow(*row) for row in await conn.execute(text(sql), params)]


async def curve_samples(
    conn: AsyncConnection, owner: str, owner_id: int, process_id: str, channel: str, limit: int
) -> list[SampleRow]:
    """One channel's samples of a serial (`owner` "serial") or of a LOT's LOT-level curves ("lot"), in time
    order; each index of migration 0009 leads with the owner's id, process and channel."""
    column = "serial_id" if owner == "serial" else "lot_id"
    extra = "" if owner == "serial" else " AND serial_id IS NULL"
    sql = (
        "SELECT time, value, unit, test_point_id FROM measurement_samples "
        f"WHERE {column} = :o AND process_id = :p AND channel = :c{extra} ORDER BY time, seq LIMIT :limit"
    )
    params = {"o": owner_id, "p": process_id, "c": channel, "limit": limit}
    return [SampleRow(*row) for row in await conn.execute(text(sql), params)]
