"""`mes up`: a download token for each station gateway and, on a fresh database, a demo firmware made active, so
the PROC-004 firmware download (spec §3.4.4) happens on the local line as it does at a site."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from cloud_api.adapters.database import Database, make_engine
from cloud_api.firmware import service, tokens
from cloud_api.firmware.settings import FirmwareSettings
from cloud_api.firmware.storage import make_storage

ACTOR = "mes-up"
DEMO_VERSION = "v1.0.0"
DEMO_NOTES = "demo firmware uploaded by `mes up` on a fresh database (not a real binary)"


@dataclass(frozen=True, slots=True)
class StackFirmware:
    tokens: dict[str, str] = field(repr=False)  # station → its new download token (older ones revoked)
    demo_version: str | None  # set when this run uploaded and activated the demo firmware


def _demo_binary() -> bytes:
    """64 KiB that look like an image, the same on every machine (a header, then a hash stream)."""
    blocks = [b"WITHFORCE-DEMO-FW " + DEMO_VERSION.encode() + b"\n"]
    seed = b"withforce-demo"
    while sum(len(b) for b in blocks) < 64 * 1024:
        seed = hashlib.sha256(seed).digest()
        blocks.append(seed)
    return b"".join(blocks)[: 64 * 1024]


async def _prepare(database_url: str, stations: list[str], firmware_dir: Path) -> StackFirmware:
    engine = make_engine(database_url, 1)
    db = Database(engine, ZoneInfo("UTC"))
    try:
        async with db.transaction() as conn:
            issued = {station: await tokens.create_station_token(conn, station, ACTOR) for station in stations}
            demo = None
            if not await service.list_firmware(conn):  # first run only: an admin's own uploads are never touched
                settings = FirmwareSettings(local_dir=firmware_dir)  # the API's MES_FIRMWARE_LOCAL_DIR
                command = service.UploadCommand(version=DEMO_VERSION, data=_demo_binary(), notes=DEMO_NOTES)
                await service.upload_firmware(db, conn, make_storage(settings), command, ACTOR, settings.max_size_bytes)
                demo = (await service.activate_firmware(db, conn, DEMO_VERSION, ACTOR)).version
        return StackFirmware(issued, demo)
    finally:
        await engine.dispose()


def prepare_firmware(database_url: str, stations: list[str], firmware_dir: Path) -> StackFirmware:
    """Tokens for `stations` (each run: a token is shown only once, so a restart issues new ones) and the demo
    firmware when the database has no firmware at all."""
    return asyncio.run(_prepare(database_url, stations, firmware_dir))
