"""SPC charts, capability, baselines and alerts (issue 14).

GET  /api/v1/spc/{process_id}/{characteristic}            viewers and up (JSON, or CSV with ?format=csv)
GET  /api/v1/spc/{process_id}/{characteristic}/baseline   viewers and up: the stored versions
POST /api/v1/spc/{process_id}/{characteristic}/baseline   managers and up, audited
GET  /api/v1/alerts                                       viewers and up, filters
POST /api/v1/alerts/{id}/ack                              operators and up, audited
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query
from fastapi.responses import JSONResponse, Response
from pydantic import AwareDatetime, BaseModel, Field

from cloud_api.http.deps import DbDep, LangDep, ManagerDep, OperatorDep, ViewerDep, get_settings
from cloud_api.http.disposition import content_disposition
from cloud_api.http.spc_format import result_csv, result_json
from cloud_api.services import alerts, spc
from cloud_api.services.spc import Series
from cloud_api.settings import CentralSettings
from mes_contracts.errors import success_message
from mes_contracts.start import success_body

router = APIRouter(tags=["spc"])
SettingsDep = Annotated[CentralSettings, Depends(get_settings)]
ProcessId = Annotated[str, Path(min_length=1, max_length=20, pattern=r"^PROC-\d{3}$")]
Characteristic = Annotated[str, Path(min_length=1, max_length=50)]
TestPoint = Annotated[str | None, Query(min_length=1, max_length=50)]
DEFAULT_DAYS = 90


class BaselineRequest(BaseModel):
    chart: Literal["imr", "xbar_r", "xbar_s"] = "imr"
    subgroup: str | None = Field(default=None, max_length=10, description="'lot' or n (X̄ charts)")
    test_point: str | None = Field(default=None, min_length=1, max_length=50)
    from_: AwareDatetime = Field(alias="from")
    to: AwareDatetime
    reason: str = Field(min_length=1, max_length=500, description="why these limits (audited)")


class AckRequest(BaseModel):
    note: str | None = Field(default=None, max_length=500)


@router.get("/api/v1/spc/{process_id}/{characteristic}", summary="SPC chart: points, limits, Nelson rules, capability")
async def chart(
    process_id: ProcessId,
    characteristic: Characteristic,
    db: DbDep,
    settings: SettingsDep,
    principal: ViewerDep,
    test_point: TestPoint = None,
    from_: Annotated[AwareDatetime | None, Query(alias="from", description="default: 90 days before 'to'")] = None,
    to: Annotated[AwareDatetime | None, Query(description="exclusive; default: now")] = None,
    chart: Annotated[str, Query(pattern="^(imr|xbar_r|xbar_s)$")] = "imr",
    subgroup: Annotated[str | None, Query(max_length=10, description="'lot' (default) or n for X̄ charts")] = None,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> Any:
    end = to or db.now()
    start = from_ or end - timedelta(days=DEFAULT_DAYS)
    spec = spc.chart_spec(chart, subgroup)
    async with db.engine.connect() as conn:
        result = await spc.spc_chart(
            conn,
            Series(process_id, characteristic, test_point),
            spec,
            start,
            end,
            settings.spc_confidence,
            settings.spc_max_values,
        )
    if format == "csv":
        name = f"spc_{process_id}_{characteristic}_{spec.chart.value}.csv"
        headers = {"Content-Disposition": content_disposition("attachment", name)}
        return Response(result_csv(result), media_type="text/csv; charset=utf-8", headers=headers)
    # Straight to JSON bytes from the columns: FastAPI's generic encoder would walk tens of thousands of points.
    return Response(result_json(result), media_type="application/json")


@router.get("/api/v1/spc/{process_id}/{characteristic}/baseline", summary="Stored SPC baselines, newest first")
async def baselines(
    process_id: ProcessId,
    characteristic: Characteristic,
    db: DbDep,
    principal: ViewerDep,
    test_point: TestPoint = None,
    chart: Annotated[str | None, Query(pattern="^(imr|xbar_r|xbar_s)$")] = None,
) -> dict[str, Any]:
    async with db.engine.connect() as conn:
        rows = await spc.list_baselines(conn, Series(process_id, characteristic, test_point), chart)
    return {"status": "success", "data": [spc.baseline_dict(row) for row in rows]}


@router.post(
    "/api/v1/spc/{process_id}/{characteristic}/baseline",
    status_code=201,
    summary="Set the next baseline version from a period (managers; audited)",
)
async def set_baseline(
    process_id: ProcessId,
    characteristic: Characteristic,
    body: BaselineRequest,
    db: DbDep,
    lang: LangDep,
    settings: SettingsDep,
    principal: ManagerDep,
) -> JSONResponse:
    spec = spc.chart_spec(body.chart, body.subgroup)
    series = Series(process_id, characteristic, body.test_point)
    async with db.transaction() as conn:
        row = await spc.set_baseline(
            conn, series, spec, body.from_, body.to, body.reason, principal.username, settings.spc_max_values
        )
    content = success_body(success_message("spc_baseline_set", lang), spc.baseline_dict(row)).to_json_dict()
    return JSONResponse(status_code=201, content=content)


@router.get("/api/v1/alerts", summary="SPC alerts, newest first (filters: status, process, characteristic, time)")
async def list_alerts(
    db: DbDep,
    principal: ViewerDep,
    status: Annotated[str | None, Query(pattern="^(open|acknowledged)$")] = None,
    process_id: Annotated[str | None, Query(max_length=20, pattern=r"^PROC-\d{3}$")] = None,
    characteristic: Annotated[str | None, Query(min_length=1, max_length=50)] = None,
    kind: Annotated[str | None, Query(pattern="^(nelson|cpk_low)$")] = None,
    station: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
    from_: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    to: Annotated[AwareDatetime | None, Query()] = None,
    after_id: Annotated[int | None, Query(ge=0, description="only alerts with a larger id (polling)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    filters = alerts.AlertFilter(status, process_id, characteristic, kind, station, from_, to, after_id, limit)
    async with db.engine.connect() as conn:
        rows = await alerts.list_alerts(conn, filters)
    return {"status": "success", "data": [alerts.alert_dict(row) for row in rows]}


@router.post("/api/v1/alerts/{alert_id}/ack", summary="Acknowledge an alert (operators and up; audited)")
async def acknowledge(
    alert_id: Annotated[int, Path(ge=1)],
    db: DbDep,
    lang: LangDep,
    principal: OperatorDep,
    body: Annotated[AckRequest | None, Body()] = None,
) -> dict[str, Any]:
    async with db.transaction() as conn:
        row = await alerts.acknowledge(conn, alert_id, principal.username, body.note if body else None)
    return success_body(success_message("alert_acknowledged", lang), alerts.alert_dict(row)).to_json_dict()
