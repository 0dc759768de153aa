"""Firmware routes (spec §4.4): upload, list, activate, station download with a Bearer token, station tokens."""

# Upload, activation and station tokens are for admins; reading is for every role; the download opens only
# with a station token (StationDep), which opens nothing else.

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse

from cloud_api.firmware import service, tokens
from cloud_api.firmware.domain import DEFAULT_TARGET_MCU
from cloud_api.firmware.settings import FirmwareSettings
from cloud_api.firmware.storage import FirmwareStorage, make_storage
from cloud_api.http.deps import AdminDep, DbDep, LangDep, StationDep, ViewerDep
from cloud_api.http.query_guard import QueryGuard
from mes_contracts.errors import success_message
from mes_contracts.start import success_body

log = logging.getLogger(__name__)


router = APIRouter(tags=["firmware"])


def configure(app: FastAPI, settings: FirmwareSettings | None = None) -> None:
    """Keep the firmware settings (cloud_api.bootstrap's, or MES_FIRMWARE_* read now) and make the storage."""
    app.state.firmware_settings = settings or FirmwareSettings()
    app.state.firmware_storage = make_storage(app.state.firmware_settings)


# Both made once at start by `configure`: a request never reads the environment.
def get_firmware_settings(request: Request) -> FirmwareSettings:
    settings: FirmwareSettings = request.app.state.firmware_settings
    return settings


def get_firmware_storage(request: Request) -> FirmwareStorage:
    storage: FirmwareStorage = request.app.state.firmware_storage
    return storage


SettingsDep = Annotated[FirmwareSettings, Depends(get_firmware_settings)]
StorageDep = Annotated[FirmwareStorage, Depends(get_firmware_storage)]


@router.post("/api/v1/firmware", status_code=201, summary="Upload a firmware version (multipart)")
async def upload(
    db: DbDep,
    lang: LangDep,
    principal: AdminDep,
    settings: SettingsDep,
    storage: StorageDep,
    file: Annotated[UploadFile, File(description="The firmware binary (.bin)")],
    version: Annotated[str, Form(min_length=1, max_length=40, description="e.g. v1.2.3")],
    target_mcu: Annotated[str, Form(max_length=40)] = DEFAULT_TARGET_MCU,
    notes: Annotated[str | None, Form()] = None,
) -> JSONResponse:
    data = await file.read(settings.max_size_bytes + 1)
    command = service.UploadCommand(version=version, data=data, target_mcu=target_mcu, notes=notes)
    async with db.transaction() as conn:
        record = await service.upload_firmware(db, conn, storage, command, principal.username, settings.max_size_bytes)
    body = success_body(success_message("firmware_uploaded", lang), record.public())
    return JSONResponse(status_code=201, content=body.to_json_dict())


@router.get("/api/v1/firmware", summary="List firmware versions, newest first", dependencies=[QueryGuard])
async def list_versions(
    db: DbDep, principal: ViewerDep, target_mcu: Annotated[str | None, Query(max_length=40)] = None
) -> dict[str, Any]:
    async with db.engine.connect() as conn:
        records = await service.list_firmware(conn, target_mcu)
    return {"status": "success", "data": [record.public() for record in records]}


@router.get(
    "/api/v1/firmware/download/{version}",
    summary="Download a firmware binary (station Bearer token)",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def download(version: str, db: DbDep, storage: StorageDep, station: StationDep) -> StreamingResponse:
    async with db.engine.connect() as conn:
        record = await service.find_firmware(conn, version)
    stream = await service.open_firmware_stream(storage, record)
    log.info("firmware %s downloaded by station %s", record.version, station.station)
    headers = {
        "Content-Disposition": f'attachment; filename="{record.filename}"',
        "Content-Length": str(record.file_size),
        "X-Firmware-Version": record.version,
        "X-Firmware-MD5": record.md5_hash,
        "X-Firmware-SHA256": record.sha256,
        "X-Firmware-Target-MCU": record.target_mcu,
        "Cache-Control": "no-store",
    }
    return StreamingResponse(stream, media_type="application/octet-stream", headers=headers)


@router.get("/api/v1/firmware/{version}", summary="One firmware version")
async def detail(version: str, db: DbDep, principal: ViewerDep) -> dict[str, Any]:
    async with db.engine.connect() as conn:
        record = await service.find_firmware(conn, version)
    return {"status": "success", "data": record.public()}


@router.post("/api/v1/firmware/{version}/activate", summary="Make a version the active firmware of its MCU")
async def activate(version: str, db: DbDep, lang: LangDep, principal: AdminDep) -> dict[str, Any]:
    async with db.transaction() as conn:
        record = await service.activate_firmware(db, conn, version, principal.username)
    return success_body(success_message("firmware_activated", lang), record.public()).to_json_dict()


@router.post(
    "/api/v1/stations/{station_id}/token",
    status_code=201,
    summary="Issue a station's download token (shown once; earlier tokens of the station are revoked)",
)
async def issue_token(station_id: str, db: DbDep, lang: LangDep, principal: AdminDep) -> JSONResponse:
    async with db.transaction() as conn:
        token = await tokens.create_station_token(conn, station_id, principal.username)
    body = success_body(success_message("station_token_created", lang), {"station_id": station_id, "token": token})
    return JSONResponse(status_code=201, content=body.to_json_dict(), headers={"Cache-Control": "no-store"})


@router.delete("/api/v1/stations/{station_id}/token", summary="Revoke all tokens of a station")
async def revoke_tokens(station_id: str, db: DbDep, lang: LangDep, principal: AdminDep) -> dict[str, Any]:
    async with db.transaction() as conn:
        count = await tokens.revoke_station_tokens(conn, station_id, principal.username)
    return success_body(
        success_message("station_token_revoked", lang), {"station_id": station_id, "revoked": count}
    ).to_json_dict()
