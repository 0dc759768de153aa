"""The centre's check that the station sending a start or completion is configured for that process.

Applies to messages from stations (the ingestor passes the topic's station as 'mes/v1/<site>/<line>/<station>').
REST calls are made by signed-in users, not stations, and are not station-bound (their role decides). A refusal
is ErrorCode.STATION_NOT_ALLOWED (403), stored like any other rejection (a redelivery gets the same answer) and
audited once per refused message (action 'station_not_allowed', entity 'station_process').
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from cloud_api.adapters import stations_sql
from cloud_api.adapters.database import Database
from cloud_api.audit.trail import record_audit
from cloud_api.domain.errors import DomainError
from cloud_api.domain.stations import StationKey, StationPermissions
from mes_contracts.errors import ErrorCode

log = logging.getLogger(__name__)
# How long the ingestor trusts its copy of the table, so a start costs no extra round trip: a revoke takes effect
# within this time; an allow at once (a refusal is always re-checked against the table itself).
CACHE_TTL_S = 2.0


@dataclass(slots=True)
class _Cached:
    loaded_at: float
    permissions: StationPermissions


_CACHE: dict[int, _Cached] = {}  # per Database (engine), by id


async def permissions(db: Database, fresh: bool = False) -> StationPermissions:
    cached = _CACHE.get(id(db))
    if not fresh and cached is not None and time.monotonic() - cached.loaded_at < CACHE_TTL_S:
        return cached.permissions
    async with db.autocommit() as conn:
        loaded = await stations_sql.load_permissions(conn)
    _CACHE[id(db)] = _Cached(time.monotonic(), loaded)
    return loaded


def forget_cache() -> None:
    """After a change made in this process (tests, CLI)."""
    _CACHE.clear()


def _process_of(raw: Any) -> str | None:
    value = raw.get("process_id") if isinstance(raw, dict) else None
    return value if isinstance(value, str) else None


async def check_station_allowed(
    db: Database, source: str, raw: Any, message_id: uuid.UUID | None, message_type: str
) -> None:
    """Raise DomainError(STATION_NOT_ALLOWED) when a station reports a process it is not configured for.

    Sources that are not a station (REST) and bodies without a readable process id pass: the latter are
    refused by the use case's own validation, with its more precise code.
    """
    station = StationKey.of_source(source)
    process_id = _process_of(raw)
    if station is None or process_id is None:
        return
    if (await permissions(db)).allows(station, process_id) or (await permissions(db, fresh=True)).allows(
        station, process_id
    ):
        return
    data = {"station": str(station), "process_id": process_id}
    log.warning(
        "refused %s from %s for %s: station not configured for the process (message %s)",
        message_type,
        station,
        process_id,
        message_id,
    )
    async with db.transaction() as conn:
        await record_audit(
            conn,
            actor=f"station:{station}",
            action="station_not_allowed",
            entity="station_process",
            entity_key=f"{station}:{process_id}",
            new={**data, "message_type": message_type, "message_id": str(message_id) if message_id else None},
        )
    raise DomainError(ErrorCode.STATION_NOT_ALLOWED, data, f"{station} is not configured for {process_id}")


async def all_allowed(db: Database, checks: list[tuple[str, Any]]) -> bool:
    """Whether every (source, raw) of a completion batch passes; the batch path sends the whole batch one by
    one otherwise, where each refusal gets its answer and audit row."""
    for fresh in (False, True):
        current = await permissions(db, fresh)
        if all(_passes(current, source, raw) for source, raw in checks):
            return True
    return False


def _passes(current: StationPermissions, source: str, raw: Any) -> bool:
    station, process_id = StationKey.of_source(source), _process_of(raw)
    return station is None or process_id is None or current.allows(station, process_id)
