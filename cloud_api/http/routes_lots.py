"""LOT routes: create (FR-LOT-001), look up with per-process state (TC-LOT-006), list, close."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from cloud_api.http.deps import DbDep, LangDep, ManagerDep, ViewerDep
from cloud_api.http.query_guard import QueryGuard
from cloud_api.services import lots, queries
from mes_contracts.errors import success_message
from mes_contracts.start import success_body

router = APIRouter(prefix="/api/v1/lots", tags=["lots"])


class CloseLot(BaseModel):
    reason: str | None = Field(default=None, max_length=500)


@router.post("", status_code=201, summary="Create a LOT; the number WF-KR-YYMMDD{D|N}-NNN is issued here")
async def create(command: lots.CreateLot, db: DbDep, lang: LangDep, principal: ManagerDep) -> JSONResponse:
    async with db.transaction() as conn:
        data = await lots.create_lot(db, conn, command, principal.username)
    return JSONResponse(
        status_code=201, content=success_body(success_message("lot_created", lang), data).to_json_dict()
    )


@router.get("", summary="List LOTs, newest first", dependencies=[QueryGuard])
async def list_all(
    db: DbDep,
    principal: ViewerDep,
    production_date: date | None = None,
    status: Annotated[str | None, Query(pattern="^(CREATED|IN_PROGRESS|COMPLETED|CLOSED)$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    component_lot: Annotated[str | None, Query(min_length=1, max_length=100, description="LOTs that used it")] = None,
    component_kind: Annotated[str | None, Query(min_length=1, max_length=50)] = None,
) -> dict[str, Any]:
    async with db.engine.connect() as conn:
        rows = await queries.list_lots(
            db, conn, production_date, status, limit, queries.ComponentFilter(component_lot, component_kind)
        )
    return {"status": "success", "data": rows}


@router.get("/{lot_number}", summary="LOT detail with per-process state, history, components and serials")
async def detail(lot_number: str, db: DbDep, lang: LangDep, principal: ViewerDep) -> dict[str, Any]:
    async with db.engine.connect() as conn:
        data = await queries.lot_detail(db, conn, lot_number, lang)
    return {"status": "success", "data": data}


@router.post("/{lot_number}/close", summary="Close a LOT (COMPLETED → CLOSED, or cancel a LOT not yet started)")
async def close(
    lot_number: str,
    db: DbDep,
    lang: LangDep,
    principal: ManagerDep,
    body: Annotated[CloseLot | None, Body()] = None,
) -> dict[str, Any]:
    async with db.transaction() as conn:
        data = await lots.close_lot(conn, lot_number, principal.username, body.reason if body else None)
    return success_body(success_message("lot_closed", lang), data).to_json_dict()
