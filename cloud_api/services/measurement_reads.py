"""QA reads of measurements (issue 14): bucketed trends with the spec limits, raw values, downsampled curves.

Trend: widths of whole hours or days come from the rollups of migration 0010 (continuous aggregates on
TimescaleDB, refreshed tables + dirty hours on plain PostgreSQL), other widths from the raw rows; either way the
rows per station and test point are merged into buckets by domain/buckets.py, so both databases answer alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.adapters import analytics_sql as sql
from cloud_api.adapters.database import Database
from cloud_api.domain import buckets
from cloud_api.domain.buckets import BucketError, Source
from cloud_api.domain.downsample import Method, downsample
from cloud_api.domain.errors import DomainError
from mes_contracts.errors import ErrorCode

MAX_MEASUREMENTS = 50_000
MAX_SAMPLES = 500_000  # a curve of ~10 s at 1 kHz is 10,000; a gauge log of a shift stays far below this


@dataclass(frozen=True, slots=True)
class TrendQuery:
    process_id: str
    characteristic: str
    test_point_id: str | None
    station: str | None
    start: datetime
    end: datetime
    bucket: str


def _invalid(reason: str) -> DomainError:
    return DomainError(ErrorCode.INVALID_REQUEST, {"errors": [reason]}, reason)


def _iso(db: Database, moment: datetime | None) -> str | None:
    return None if moment is None else db.local(moment).isoformat()


async def trend(db: Database, conn: AsyncConnection, q: TrendQuery) -> dict[str, Any]:
    """Bucketed count, mean, stddev, min, max, out-of-limit count and limits over [from, to)."""
    try:
        width = buckets.parse_width(q.bucket)
        start, end = buckets.aligned_range(q.start, q.end, width, db.zone)
    except BucketError as error:
        raise _invalid(str(error)) from None
    except OverflowError:  # a year 1 or 9999 at the edge of what datetime can hold
        raise _invalid("'from' and 'to' must lie between the years 1900 and 9000") from None
    source = buckets.source_for(width, db.zone, await sql.rollup_zone(conn))
    f = sql.TrendFilter(q.process_id, q.characteristic, q.test_point_id, q.station, start, end)
    origin = buckets.origin(db.zone)
    if source is Source.RAW:
        parts = await sql.raw_partials(conn, f, width, origin, by_day=width % buckets.DAY == timedelta(0))
    else:
        parts = await sql.rollup_partials(conn, source, f, width, origin)
    stats = buckets.rebucket(parts, width, db.zone)
    # The newest value's limits and unit: looked for in the last bucket with data only (a short index range).
    spec = await sql.latest_spec(conn, replace(f, start=stats[-1].bucket)) if stats else None
    return {
        "process_id": q.process_id,
        "characteristic": q.characteristic,
        "test_point": q.test_point_id,
        "station": q.station,
        "bucket": buckets.label(width),
        "from": _iso(db, start),
        "to": _iso(db, end),
        "source": source.value,
        "unit": spec.unit if spec else None,
        "spec": _spec(spec),
        "points": [_point(db, b) for b in stats],
    }


def _spec(spec: sql.SpecRow | None) -> dict[str, Any] | None:
    if spec is None:
        return None
    return {"target": spec.target, "tolerance": spec.tolerance, "lsl": spec.lower_limit, "usl": spec.upper_limit}


def _point(db: Database, b: buckets.BucketStats) -> dict[str, Any]:
    return {
        "bucket": _iso(db, b.bucket),
        "n": b.n,
        "mean": b.mean,
        "stddev": b.stddev,
        "min": b.min_value,
        "max": b.max_value,
        "out_of_limit": b.out_of_limit,
        "lsl": b.lsl,
        "usl": b.usl,
    }


async def _owner(conn: AsyncConnection, serial: str | None, lot: str | None) -> tuple[int, sql.SerialRef | None]:
    """(lot id, serial) of exactly one of serial= / lot=."""
    if (serial is None) == (lot is None):
        raise _invalid("give exactly one of serial= and lot=")
    if serial is not None:
        ref = await sql.find_serial(conn, serial)
        if ref is None:
            raise DomainError(ErrorCode.SERIAL_NOT_FOUND, {"serial_number": serial})
        return ref.lot_id, ref
    assert lot is not None
    lot_id = await sql.find_lot_id(conn, lot)
    if lot_id is None:
        raise DomainError(ErrorCode.LOT_NOT_FOUND, {"lot_number": lot})
    return lot_id, None


async def measurements(
    db: Database,
    conn: AsyncConnection,
    serial: str | None,
    lot: str | None,
    process_id: str | None,
    limit: int,
) -> dict[str, Any]:
    """Raw values of a LOT, or of a serial (its unit-level rows and its LOT's LOT-level ones)."""
    lot_id, ref = await _owner(conn, serial, lot)
    rows = await sql.measurements_of(
        conn, lot_id, ref.id if ref else None, process_id, min(limit, MAX_MEASUREMENTS) + 1
    )
    truncated = len(rows) > limit
    items = []
    for row in rows[:limit]:
        item = asdict(row)
        item["time"] = _iso(db, row.time)
        item["level"] = "serial" if row.serial_number else "lot"
        items.append(item)
    return {"serial": serial, "lot": lot, "count": len(items), "truncated": truncated, "measurements": items}


async def curve(
    db: Database,
    conn: AsyncConnection,
    serial: str | None,
    lot: str | None,
    process_id: str,
    channel: str,
    points: int | None,
    method: Method,
) -> dict[str, Any]:
    """One channel's samples in time order; `points` set: downsampled to that many for display."""
    lot_id, ref = await _owner(conn, serial, lot)
    owner, owner_id = ("serial", ref.id) if ref else ("lot", lot_id)
    rows = await sql.curve_samples(conn, owner, owner_id, process_id, channel, MAX_SAMPLES)
    t0 = rows[0].time if rows else None
    xs = [(r.time - t0).total_seconds() for r in rows] if t0 else []
    ys = [r.value for r in rows]
    try:
        keep = downsample(xs, ys, points, method) if points is not None else list(range(len(rows)))
    except ValueError as error:
        raise _invalid(str(error)) from None
    return {
        "serial": serial,
        "lot": lot,
        "process_id": process_id,
        "channel": channel,
        "unit": rows[0].unit if rows else None,
        "t0": _iso(db, t0),
        "samples": len(rows),
        "method": method.value if points is not None and len(keep) < len(rows) else None,
        "count": len(keep),
        # Column-wise, like the evt/measurement batches: seconds after t0 and the values.
        "t": [round(xs[i], 6) for i in keep],
        "v": [ys[i] for i in keep],
    }
