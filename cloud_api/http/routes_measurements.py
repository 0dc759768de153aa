"""QA measurement read API: trends, raw measurements, downsampled curves (issue 14). Viewers and up; an unknown
query parameter (a misspelt filter) answers 422 instead of an unfiltered answer (QueryGuard)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from cloud_api.http.deps import DbDep, ViewerDep
from cloud_api.http.query_guard import QueryGuard
from cloud_api.services import measurement_reads
from cloud_api.services.measurement_reads import MAX_MEASUREMENTS, TrendQuery

router = APIRouter(prefix="/api/v1", tags=["measurements"])
Name = Annotated[str, Query(min_length=1, max_length=50)]
ProcessId = Annotated[str, Query(min_length=1, max_length=20, pattern=r"^PROC-\d{3}$")]


@router.get(
    "/measurements/trend",
    summary="Bucketed statistics of one characteristic (count, mean, stddev, min, max, out of limit, limits)",
    dependencies=[QueryGuard],
)
async def trend(
    db: DbDep,
    principal: ViewerDep,
    process_id: ProcessId,
    characteristic: Name,
    from_: Annotated[AwareDatetime, Query(alias="from", description="ISO 8601 with offset")],
    to: Annotated[AwareDatetime, Query(description="ISO 8601 with offset (exclusive)")],
    bucket: Annotated[str, Query(max_length=10, description="hour, day, week or e.g. 15m, 2h, 7d")] = "hour",
    test_point: Annotated[str | None, Query(min_length=1, max_length=50)] = None,
    station: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
) -> dict[str, Any]:
    query = TrendQuery(process_id, characteristic, test_point, station, from_, to, bucket)
    async with db.engine.connect() as conn:
        data = await measurement_reads.trend(db, conn, query)
    return {"status": "success", "data": data}


@router.get(
    "/measurements",
    summary="Raw measured values of a serial (with its LOT-level values) or of a LOT",
    dependencies=[QueryGuard],
)
async def measurements(
    db: DbDep,
    principal: ViewerDep,
    serial: Annotated[str | None, Query(min_length=1, max_length=50)] = None,
    lot: Annotated[str | None, Query(min_length=1, max_length=40)] = None,
    process_id: Annotated[str | None, Query(max_length=20, pattern=r"^PROC-\d{3}$")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_MEASUREMENTS)] = 10_000,
) -> dict[str, Any]:
    async with db.engine.connect() as conn:
        data = await measurement_reads.measurements(db, conn, serial, lot, process_id, limit)
    return {"status": "success", "data": data}


@router.get(
    "/samples",
    summary="One channel's curve of a serial (or a LOT), downsampled on request",
    dependencies=[QueryGuard],
)
async def samples(
    db: DbDep,
    principal: ViewerDep,
    process_id: ProcessId,
    channel: Name,
    serial: Annotated[str | None, Query(min_length=1, max_length=50)] = None,
    lot: Annotated[str | None, Query(min_length=1, max_length=40)] = None,
    points: Annotated[int | None, Query(ge=4, le=100_000, description="at most this many points")] = None,
    method: Annotated[measurement_reads.Method, Query(description="lttb or minmax")] = measurement_reads.Method.LTTB,
) -> dict[str, Any]:
    async with db.engine.connect() as conn:
        data = await measurement_reads.curve(db, conn, serial, lot, process_id, channel, points, method)
    return {"status": "success", "data": data}
