"""Printer registry routes: list and look up (viewers), register and change (admins)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from cloud_api.http.deps import AdminDep, DbDep, LangDep, ViewerDep
from cloud_api.http.query_guard import QueryGuard
from cloud_api.labels import printers
from cloud_api.labels.domain import PrinterFields, PrinterIn
from mes_contracts.errors import success_message
from mes_contracts.labels import LabelType
from mes_contracts.start import success_body

router = APIRouter(prefix="/api/v1/printers", tags=["printers"])


@router.get("", summary="Registered printers, oldest first", dependencies=[QueryGuard])
async def list_all(
    db: DbDep,
    principal: ViewerDep,
    station: Annotated[str | None, Query(max_length=64)] = None,
    purpose: LabelType | None = None,
    active: bool | None = None,
) -> dict[str, Any]:
    async with db.engine.connect() as conn:
        rows = await printers.list_printers(conn, station, purpose.value if purpose else None, active)
    return {"status": "success", "data": rows}


@router.get("/{printer_id}", summary="One printer")
async def detail(printer_id: str, db: DbDep, principal: ViewerDep) -> dict[str, Any]:
    async with db.engine.connect() as conn:
        printer = await printers.get_printer(conn, printer_id)
    return {"status": "success", "data": printer.public()}


@router.post("", status_code=201, summary="Register a printer attached to a station's gateway (admin)")
async def create(body: PrinterIn, db: DbDep, lang: LangDep, principal: AdminDep) -> JSONResponse:
    async with db.transaction() as conn:
        printer = await printers.create_printer(conn, body, principal.username)
    return JSONResponse(
        status_code=201,
        content=success_body(success_message("printer_registered", lang), printer.public()).to_json_dict(),
    )


@router.patch("/{printer_id}", summary="Change a printer: address, station, size, purposes, active (admin)")
async def update(printer_id: str, body: PrinterFields, db: DbDep, lang: LangDep, principal: AdminDep) -> dict[str, Any]:
    async with db.transaction() as conn:
        printer = await printers.update_printer(conn, printer_id, body, principal.username)
    return success_body(success_message("printer_updated", lang), printer.public()).to_json_dict()
