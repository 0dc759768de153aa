"""Trace and recall routes: serial and LOT genealogy, component-lot recall, defects, eDHR (issue 13).

Viewers and up. Answers `{"status": "success", "data": …}` with the typed models of services/trace_models.py;
`?lang=en` (or `Accept-Language: en`) gives English process names and CSV headers.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import Response
from pydantic import BaseModel

from cloud_api.http.deps import DbDep, LangDep, ViewerDep
from cloud_api.http.disposition import content_disposition
from cloud_api.http.query_guard import QueryGuard
from cloud_api.services import defects, dhr_pdf, trace
from cloud_api.services.trace_models import Defects, LotTrace, Recall, SerialTrace
from mes_contracts.route import ROUTE

router = APIRouter(tags=["trace"], dependencies=[QueryGuard])

PROCESS_PATTERN = "^(" + "|".join(step.process_id for step in ROUTE) + ")$"


def trace_lang(header_lang: LangDep, lang: Annotated[Literal["ko", "en"] | None, Query()] = None) -> str:
    """`?lang=` wins over Accept-Language (a link or a download cannot set headers)."""
    return lang or header_lang


TraceLang = Annotated[str, Depends(trace_lang)]


class SerialTraceAnswer(BaseModel):
    status: str = "success"
    data: SerialTrace


class LotTraceAnswer(BaseModel):
    status: str = "success"
    data: LotTrace


class RecallAnswer(BaseModel):
    status: str = "success"
    data: Recall


class DefectsAnswer(BaseModel):
    status: str = "success"
    data: Defects


@router.get(
    "/api/v1/trace/serials/{serial_number}",
    summary="A serial's genealogy: LOT, all 8 processes with data, measurements, components, firmware, labels",
)
async def serial_trace(serial_number: str, db: DbDep, lang: TraceLang, principal: ViewerDep) -> SerialTraceAnswer:
    return SerialTraceAnswer(data=await trace.serial_trace(db, serial_number, lang))


@router.get(
    "/api/v1/trace/serials/{serial_number}/dhr.pdf",
    summary="Device history record (21 CFR 820.184) of a serial as PDF",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}},
)
async def serial_dhr(serial_number: str, db: DbDep, lang: TraceLang, principal: ViewerDep) -> Response:
    found = await trace.serial_trace(db, serial_number, lang)
    pdf = await dhr_pdf.render_async(found, lang, db.now())
    return Response(
        pdf,
        media_type="application/pdf",
        headers={
            "Content-Disposition": content_disposition("inline", f"DHR-{serial_number}.pdf"),
            "Cache-Control": "no-store",
        },
    )


@router.get(
    "/api/v1/trace/lots/{lot_number}",
    summary="A LOT's genealogy: all 8 processes with every result, its serials with status, components, labels",
)
async def lot_trace(lot_number: str, db: DbDep, lang: TraceLang, principal: ViewerDep) -> LotTraceAnswer:
    return LotTraceAnswer(data=await trace.lot_trace(db, lot_number, lang))


@router.get(
    "/api/v1/trace/components",
    summary="Recall: every LOT and serial that used a component lot; ?format=csv or Accept: text/csv exports it",
    response_model=RecallAnswer,
    responses={200: {"content": {"text/csv": {}}}},
)
async def components(
    db: DbDep,
    lang: TraceLang,
    principal: ViewerDep,
    lot: Annotated[str, Query(min_length=1, max_length=100, description="the component lot, e.g. SPR-2512-07")],
    kind: Annotated[str | None, Query(max_length=50, description="sma_spring, busbar, …; empty: any")] = None,
    export: Annotated[Literal["json", "csv"] | None, Query(alias="format")] = None,
    accept: Annotated[str | None, Header()] = None,
) -> RecallAnswer | Response:
    kind = kind or None  # `?kind=&lot=…` (an empty kind) means any kind
    found = await trace.recall(db, lot, kind, lang)
    if export == "csv" or (export is None and accept is not None and "text/csv" in accept):
        name = f"recall-{kind + '-' if kind else ''}{lot}.csv"
        return Response(
            trace.recall_csv(found, lang),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": content_disposition("attachment", name)},
        )
    return RecallAnswer(data=found)


@router.get("/api/v1/defects", summary="FAIL results with cause, measurement, LOT, serial, worker, station; counts")
async def defect_list(
    db: DbDep,
    lang: TraceLang,
    principal: ViewerDep,
    start: Annotated[date | datetime | None, Query(alias="from", description="date or date-time; default -7 d")] = None,
    end: Annotated[date | datetime | None, Query(alias="to", description="date (inclusive) or date-time")] = None,
    process_id: Annotated[str | None, Query(pattern=PROCESS_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> DefectsAnswer:
    return DefectsAnswer(data=await defects.list_defects(db, start, end, process_id, limit, lang))
