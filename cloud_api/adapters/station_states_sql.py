"""SQL of the persisted station states (tables station_states and station_state_days, migration 0013).

The only writer is the ingestor (services/station_states.py); Grafana reads them through the reporting views.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True, slots=True)
class StateRow:
    site: str
    line: str
    station: str
    gateway_id: str
    online: bool
    software_version: str
    outbox_depth: int
    oldest_pending_age_s: float | None
    outbox_full: bool
    server_online: bool | None
    last_error_code: str | None
    last_error_message: str | None
    last_error_at: datetime | None
    stuck_count: int
    errored_total: int
    reported_at: datetime


@dataclass(frozen=True, slots=True)
class Previous:
    reported_at: datetime
    errored_total: int


_PREVIOUS = text("""
SELECT reported_at, errored_total FROM station_states
WHERE site = :site AND line = :line AND station = :station
FOR UPDATE
""")

_UPSERT = text("""
INSERT INTO station_states (site, line, station, gateway_id, online, software_version, outbox_depth,
    oldest_pending_age_s, outbox_full, server_online, last_error_code, last_error_message, last_error_at,
    stuck_count, errored_total, reported_at)
VALUES (:site, :line, :station, :gateway_id, :online, :software_version, :outbox_depth, :oldest_pending_age_s,
    :outbox_full, :server_online, :last_error_code, :last_error_message, :last_error_at, :stuck_count,
    :errored_total, :reported_at)
ON CONFLICT (site, line, station) DO UPDATE SET gateway_id = EXCLUDED.gateway_id, online = EXCLUDED.online,
    software_version = EXCLUDED.software_version, outbox_depth = EXCLUDED.outbox_depth,
    oldest_pending_age_s = EXCLUDED.oldest_pending_age_s, outbox_full = EXCLUDED.outbox_full,
    server_online = EXCLUDED.server_online, last_error_code = EXCLUDED.last_error_code,
    last_error_message = EXCLUDED.last_error_message, last_error_at = EXCLUDED.last_error_at,
    stuck_count = EXCLUDED.stuck_count, errored_total = EXCLUDED.errored_total, reported_at = EXCLUDED.reported_at,
    received_at = now()
WHERE station_states.reported_at < EXCLUDED.reported_at
""")

_DAY = text("""
INSERT INTO station_state_days AS d (day, site, line, station, reports, offline_reports, max_outbox_depth,
    max_oldest_pending_age_s, files_errored, last_errored_total, first_reported_at, last_reported_at)
VALUES (:day, :site, :line, :station, 1, CASE WHEN :online THEN 0 ELSE 1 END, :outbox_depth,
    :oldest_pending_age_s, :errored, :errored_total, :reported_at, :reported_at)
ON CONFLICT (day, site, line, station) DO UPDATE SET reports = d.reports + 1,
    offline_reports = d.offline_reports + EXCLUDED.offline_reports,
    max_outbox_depth = GREATEST(d.max_outbox_depth, EXCLUDED.max_outbox_depth),
    max_oldest_pending_age_s = GREATEST(d.max_oldest_pending_age_s, EXCLUDED.max_oldest_pending_age_s),
    files_errored = d.files_errored + EXCLUDED.files_errored, last_errored_total = EXCLUDED.last_errored_total,
    last_reported_at = GREATEST(d.last_reported_at, EXCLUDED.last_reported_at)
""")


async def previous(conn: AsyncConnection, site: str, line: str, station: str) -> Previous | None:
    """The stored state of the station, locked until the caller's transaction ends (one writer at a time)."""
    row = (await conn.execute(_PREVIOUS, {"site": site, "line": line, "station": station})).first()
    return None if row is None else Previous(row.reported_at, row.errored_total)


async def store(conn: AsyncConnection, state: StateRow, day: date, errored: int) -> None:
    """The latest state, and the day's summary with `errored` files added."""
    params = asdict(state)
    await conn.execute(_UPSERT, params)
    await conn.execute(_DAY, {**params, "day": day, "errored": errored})
