"""SQL of the station ↔ process permissions (table station_processes, migration 0007)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.domain.stations import StationKey, StationPermissions

_ALL = text("SELECT site, line, station, process_id FROM station_processes ORDER BY site, line, station, process_id")
_ALLOW = text("""
INSERT INTO station_processes (site, line, station, process_id, created_by)
VALUES (:site, :line, :station, :process_id, :actor)
ON CONFLICT DO NOTHING
""")
_REVOKE = text("""
DELETE FROM station_processes
WHERE site = :site AND line = :line AND station = :station AND process_id = :process_id
""")
_PROCESS_EXISTS = text("SELECT 1 FROM process_steps WHERE process_id = :process_id")


async def load_permissions(conn: AsyncConnection) -> StationPermissions:
    rows = (await conn.execute(_ALL)).all()
    return StationPermissions.of((StationKey(r.site, r.line, r.station), r.process_id) for r in rows)


def _params(station: StationKey, process_id: str) -> dict[str, str]:
    return {"site": station.site, "line": station.line, "station": station.station, "process_id": process_id}


async def process_exists(conn: AsyncConnection, process_id: str) -> bool:
    return (await conn.execute(_PROCESS_EXISTS, {"process_id": process_id})).first() is not None


async def allow(conn: AsyncConnection, station: StationKey, process_id: str, actor: str) -> bool:
    """True when the pair was added (False: it was there already)."""
    result = await conn.execute(_ALLOW, {**_params(station, process_id), "actor": actor})
    return bool(result.rowcount)


async def revoke(conn: AsyncConnection, station: StationKey, process_id: str) -> bool:
    result = await conn.execute(_REVOKE, _params(station, process_id))
    return bool(result.rowcount)
