"""SQL for firmware versions and station tokens; every function runs inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.firmware.domain import FirmwareRecord

_COLUMNS = (
    "version, filename, file_size, md5_hash, sha256, target_mcu, storage_key, uploaded_by, uploaded_at, "
    "active, notes, activated_at, activated_by"
)


def _record(row: Sequence[Any]) -> FirmwareRecord:
    """The row of `_COLUMNS` (in FirmwareRecord's field order), the fixed-width digests trimmed."""
    record = FirmwareRecord(*row)
    return replace(record, md5_hash=record.md5_hash.strip(), sha256=record.sha256.strip())


async def version_exists(conn: AsyncConnection, version: str) -> bool:
    row = await conn.execute(text("SELECT 1 FROM firmware_versions WHERE version = :v"), {"v": version})
    return row.first() is not None


async def insert_version(conn: AsyncConnection, values: dict[str, Any]) -> FirmwareRecord:
    row = await conn.execute(
        text(
            "INSERT INTO firmware_versions (version, filename, file_size, md5_hash, sha256, target_mcu, "
            "storage_key, uploaded_by, uploaded_at, notes) VALUES (:version, :filename, :file_size, :md5_hash, "
            f":sha256, :target_mcu, :storage_key, :uploaded_by, :uploaded_at, :notes) RETURNING {_COLUMNS}"
        ),
        values,
    )
    return _record(row.one())


async def find_version(conn: AsyncConnection, version: str) -> FirmwareRecord | None:
    row = await conn.execute(text(f"SELECT {_COLUMNS} FROM firmware_versions WHERE version = :v"), {"v": version})
    found = row.first()
    return _record(found) if found else None


async def list_versions(conn: AsyncConnection, target_mcu: str | None = None) -> list[FirmwareRecord]:
    rows = await conn.execute(
        text(
            f"SELECT {_COLUMNS} FROM firmware_versions WHERE CAST(:m AS text) IS NULL OR target_mcu = :m "
            "ORDER BY uploaded_at DESC, id DESC"
        ),
        {"m": target_mcu},
    )
    return [_record(r) for r in rows]


async def active_version(conn: AsyncConnection, target_mcu: str) -> FirmwareRecord | None:
    row = await conn.execute(
        text(f"SELECT {_COLUMNS} FROM firmware_versions WHERE target_mcu = :m AND active"), {"m": target_mcu}
    )
    found = row.first()
    return _record(found) if found else None


async def activate(conn: AsyncConnection, version: str, target_mcu: str, actor: str, at: datetime) -> None:
    """Lock the MCU's rows (concurrent activations serialise), deactivate the others, activate this one."""
    await conn.execute(
        text("SELECT id FROM firmware_versions WHERE target_mcu = :m ORDER BY id FOR UPDATE"), {"m": target_mcu}
    )
    await conn.execute(
        text("UPDATE firmware_versions SET active = false WHERE target_mcu = :m AND active AND version <> :v"),
        {"m": target_mcu, "v": version},
    )
    await conn.execute(
        text(
            "UPDATE firmware_versions SET active = true, activated_at = :at, activated_by = :a "
            "WHERE version = :v AND NOT active"
        ),
        {"v": version, "a": actor, "at": at},
    )


async def insert_token(conn: AsyncConnection, station_id: str, token_hash: str, actor: str) -> datetime:
    row = await conn.execute(
        text(
            "INSERT INTO station_tokens (station_id, token_hash, created_by) VALUES (:s, :h, :a) RETURNING created_at"
        ),
        {"s": station_id, "h": token_hash, "a": actor},
    )
    created_at: datetime = row.scalar_one()
    return created_at


async def revoke_tokens(conn: AsyncConnection, station_id: str) -> int:
    result = await conn.execute(
        text("UPDATE station_tokens SET revoked_at = now() WHERE station_id = :s AND revoked_at IS NULL"),
        {"s": station_id},
    )
    return int(result.rowcount or 0)


async def use_token(conn: AsyncConnection, token_hash: str) -> str | None:
    """The station of a valid (not revoked) token, stamping its last use; None for an unknown or revoked one."""
    row = await conn.execute(
        text(
            "UPDATE station_tokens SET last_used_at = now() WHERE token_hash = :h AND revoked_at IS NULL "
            "RETURNING station_id"
        ),
        {"h": token_hash},
    )
    station: str | None = row.scalar_one_or_none()
    return station
