"""Firmware use cases: upload a version, list, activate, open a download, and the PROC-004 firmware_info."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.adapters.database import Database
from cloud_api.audit.trail import record_audit
from cloud_api.domain.errors import DomainError
from cloud_api.firmware import repository as repo
from cloud_api.firmware.domain import (
    DEFAULT_TARGET_MCU,
    FirmwareRecord,
    InvalidName,
    digests,
    download_url,
    firmware_filename,
    new_storage_key,
    normalize_mcu,
    normalize_version,
)
from cloud_api.firmware.storage import FirmwareStorage, ObjectMissing
from mes_contracts.errors import ErrorCode
from mes_contracts.start import FirmwareInfo

log = logging.getLogger(__name__)

NOTES_MAX = 2000


@dataclass(frozen=True, slots=True)
class UploadCommand:
    version: str
    data: bytes
    target_mcu: str = DEFAULT_TARGET_MCU
    notes: str | None = None


def _invalid(*errors: str) -> DomainError:
    return DomainError(ErrorCode.INVALID_FIRMWARE, {"errors": list(errors)})


def _validated(command: UploadCommand, max_size: int) -> tuple[str, str]:
    try:
        version, mcu = normalize_version(command.version), normalize_mcu(command.target_mcu)
    except InvalidName as error:
        raise _invalid(str(error)) from None
    if not command.data:
        raise _invalid("file: the firmware file is empty")
    if len(command.data) > max_size:
        raise _invalid(f"file: larger than {max_size} bytes")
    if command.notes is not None and len(command.notes) > NOTES_MAX:
        raise _invalid(f"notes: at most {NOTES_MAX} characters")
    return version, mcu


async def upload_firmware(
    db: Database, conn: AsyncConnection, storage: FirmwareStorage, command: UploadCommand, actor: str, max_size: int
) -> FirmwareRecord:
    """Store the binary under a fresh key, then the row; a refused row removes its own object again."""
    version, mcu = _validated(command, max_size)
    if await repo.version_exists(conn, version):
        raise DomainError(ErrorCode.DUPLICATE_FIRMWARE_VERSION, {"version": version})
    sums = digests(command.data)
    key = new_storage_key(version)
    await storage.put(key, command.data)
    try:
        async with conn.begin_nested():
            record = await repo.insert_version(
                conn,
                {
                    "version": version,
                    "filename": firmware_filename(version),
                    "file_size": sums.size,
                    "md5_hash": sums.md5,
                    "sha256": sums.sha256,
                    "target_mcu": mcu,
                    "storage_key": key,
                    "uploaded_by": actor,
                    "uploaded_at": db.now(),
                    "notes": command.notes,
                },
            )
            # Inside the savepoint: a refused audit row removes the stored object like a refused version row.
            await record_audit(
                conn, actor=actor, action="firmware.upload", entity="firmware", entity_key=version, new=record.public()
            )
    except BaseException as error:
        try:
            await storage.delete(key)
        except Exception:
            log.exception("could not remove the stored object %s of a refused upload", key)
        if isinstance(error, IntegrityError):  # a concurrent upload of the same version won
            raise DomainError(ErrorCode.DUPLICATE_FIRMWARE_VERSION, {"version": version}) from error
        raise
    log.info("firmware %s (%s, %s bytes, md5 %s) uploaded by %s", version, mcu, sums.size, sums.md5, actor)
    return record


async def list_firmware(conn: AsyncConnection, target_mcu: str | None = None) -> list[FirmwareRecord]:
    return await repo.list_versions(conn, target_mcu)


async def find_firmware(conn: AsyncConnection, version: str) -> FirmwareRecord:
    try:
        canonical = normalize_version(version)
    except InvalidName:
        canonical = None
    record = await repo.find_version(conn, canonical) if canonical else None
    if record is None:
        raise DomainError(ErrorCode.FIRMWARE_NOT_FOUND, {"version": version})
    return record


async def activate_firmware(db: Database, conn: AsyncConnection, version: str, actor: str) -> FirmwareRecord:
    """Make `version` the one active firmware of its MCU (the others of that MCU become inactive)."""
    record = await find_firmware(conn, version)
    previous = await repo.active_version(conn, record.target_mcu)  # read before the MCU's rows are locked
    await repo.activate(conn, record.version, record.target_mcu, actor, db.now())
    log.info("firmware %s activated for %s by %s", record.version, record.target_mcu, actor)
    activated = await find_firmware(conn, record.version)
    await record_audit(
        conn,
        actor=actor,
        action="firmware.activate",
        entity="firmware",
        entity_key=record.version,
        old={
            "active": record.active,
            "active_version": previous.version if previous else None,
            "target_mcu": record.target_mcu,
        },
        new={"active": True, "active_version": record.version, "target_mcu": record.target_mcu},
    )
    return activated


async def open_firmware_stream(storage: FirmwareStorage, record: FirmwareRecord) -> AsyncIterator[bytes]:
    """The binary's chunks, with the first one already read so a missing object fails before any header."""
    stream = storage.open(record.storage_key)
    try:
        first = await anext(stream)
    except ObjectMissing:
        log.error("firmware %s: object %s missing from storage", record.version, record.storage_key)
        raise DomainError(ErrorCode.FIRMWARE_NOT_FOUND, {"version": record.version}, "stored object missing") from None
    except StopAsyncIteration:
        first = b""

    async def chained() -> AsyncIterator[bytes]:
        if first:
            yield first
        async for chunk in stream:
            yield chunk

    return chained()


async def active_firmware_info(conn: AsyncConnection, target_mcu: str = DEFAULT_TARGET_MCU) -> FirmwareInfo | None:
    """The PROC-004 start answer's firmware_info: the MCU's active version, or None when none is active."""
    record = await repo.active_version(conn, target_mcu)
    if record is None:
        return None
    return FirmwareInfo(
        version=record.version,
        filename=record.filename,
        file_size=record.file_size,
        md5_hash=record.md5_hash,
        download_url=download_url(record.version),
    )
