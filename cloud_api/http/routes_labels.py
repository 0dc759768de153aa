"""Label routes: print (§4.3), reprint with history (FR-SN-003), print history, serial detail, PNG preview."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from cloud_api.domain.errors import DomainError
from cloud_api.http.deps import DbDep, LangDep, ManagerDep, OperatorDep, ViewerDep
from cloud_api.http.query_guard import QueryGuard
from cloud_api.labels import queries, rendering
from cloud_api.labels import repository as repo
from cloud_api.labels.service import PrintChannel, ReprintRequest, print_label, reprint_label
from mes_contracts.errors import ErrorCode, success_message
from mes_contracts.labels import PRINTER_ID_PATTERN, LabelPrintRequest, LabelType
from mes_contracts.start import success_body

router = APIRouter(tags=["labels"])


class LabelDataRoute(APIRoute):
    """A malformed print or reprint body is the spec's INVALID_LABEL_DATA, not the generic INVALID_REQUEST."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as error:
                errors = [
                    f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body')}: {e.get('msg')}"
                    for e in error.errors()
                ]
                raise DomainError(ErrorCode.INVALID_LABEL_DATA, {"errors": errors}) from error

        return checked


printing = APIRouter(prefix="/api/v1/label", tags=["labels"], route_class=LabelDataRoute)


def get_channel(request: Request) -> PrintChannel:
    channel: PrintChannel = request.app.state.mqtt
    return channel


def get_timeout(request: Request) -> float:
    return float(request.app.state.settings.label_print_timeout_s)


ChannelDep = Annotated[PrintChannel, Depends(get_channel)]
TimeoutDep = Annotated[float, Depends(get_timeout)]
SerialQuery = Annotated[str | None, Query(min_length=1, max_length=50)]
LotQuery = Annotated[str | None, Query(min_length=1, max_length=40)]


@printing.post("/print", summary="Print a LOT or serial label now (§4.3); waits for the station's answer")
async def print_now(
    body: Annotated[LabelPrintRequest, Body()],
    db: DbDep,
    lang: LangDep,
    principal: ManagerDep,
    channel: ChannelDep,
    timeout: TimeoutDep,
) -> dict[str, Any]:
    data = await print_label(db, channel, body, principal.username, timeout)
    return success_body(success_message("label_printed", lang), data).to_json_dict()


@printing.post("/reprint", summary="Reprint a serial or LOT label (same number) with reason and worker")
async def reprint(
    body: ReprintRequest,
    db: DbDep,
    lang: LangDep,
    principal: OperatorDep,
    channel: ChannelDep,
    timeout: TimeoutDep,
) -> dict[str, Any]:
    data = await reprint_label(db, channel, body, principal.username, timeout)
    return success_body(success_message("label_reprinted", lang), data).to_json_dict()


@router.get(
    "/api/v1/label/history",
    summary="Prints and reprints of a serial's label or of a LOT's labels",
    dependencies=[QueryGuard],
)
async def history(
    db: DbDep,
    principal: ViewerDep,
    serial_number: SerialQuery = None,
    lot_number: LotQuery = None,
    label_type: LabelType | None = None,
    reprints_only: bool = False,
) -> dict[str, Any]:
    async with db.engine.connect() as conn:
        rows = await queries.history(db, conn, serial_number, lot_number, label_type, reprints_only)
    return {"status": "success", "data": rows}


@router.get("/api/v1/serials/{serial_number}", summary="A serial number: its LOT, state and label history")
async def serial(serial_number: str, db: DbDep, principal: ViewerDep) -> dict[str, Any]:
    async with db.engine.connect() as conn:
        data = await queries.serial_detail(db, conn, serial_number)
    return {"status": "success", "data": data}


@router.get(
    "/api/v1/labels/preview.png",
    summary="PNG of a serial's or a LOT's label as a ZPL printer prints it",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
async def preview(
    db: DbDep,
    principal: ViewerDep,
    serial_number: SerialQuery = None,
    lot_number: LotQuery = None,
    dpi: Annotated[int | None, Query(description="203 or 300; default the printer's")] = None,
    printer_id: Annotated[str | None, Query(pattern=PRINTER_ID_PATTERN)] = None,
) -> Response:
    if dpi is not None and dpi not in (203, 300):
        raise DomainError(ErrorCode.INVALID_REQUEST, {"errors": ["dpi: 203 or 300"]})
    async with db.engine.connect() as conn:
        found = await queries.subject(conn, serial_number, lot_number)
        label_type = queries.label_type_of(found)
        printer = await repo.choose_printer(conn, label_type, printer_id)
    if printer_id is not None and printer is None:
        raise DomainError(ErrorCode.PRINTER_NOT_FOUND, {"printer_id": printer_id})
    label = rendering.content(
        label_type,
        found.lot_number,
        found.model_name,
        queries.label_date(db, found),
        found.serial_number,
        found.target_quantity,
    )
    size = (printer.width_mm, printer.height_mm) if printer else rendering.DEFAULT_SIZE_MM
    resolution = dpi or (printer.dpi if printer else rendering.DEFAULT_DPI)
    png = await asyncio.to_thread(rendering.preview_png, label, resolution, size)
    name = f"{found.serial_number or found.lot_number}.png"
    return Response(
        png,
        media_type="image/png",
        headers={"Content-Disposition": f'inline; filename="{name}"', "Cache-Control": "no-store"},
    )


router.include_router(printing)
