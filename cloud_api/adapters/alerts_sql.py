"""SQL of SPC alerts: the `alerts` table, the watch's `alert_cursor`, and the commit horizon of process_results.

The watch reads completions by id. Ids are taken when a transaction inserts, not when it commits, so a cursor
could pass an id whose transaction commits later. The horizon fixes that: read the id sequence's high-water
mark H, then the transactions holding a write lock on process_results (every inserter takes it before it draws
an id, and keeps it to its end). Once those transactions have ended, every id up to H is committed or rolled
back for good, and (cursor, H] can be read safely. pg_locks is readable by any role.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

ALERT_COLUMNS = (
    "a.id, a.kind, a.rule, a.process_id, a.characteristic, a.test_point_id, a.result_id, a.station, a.value, "
    "a.cpk, a.threshold, a.baseline_id, a.point_time, a.raised_at, a.status, a.acknowledged_by, a.acknowledged_at, "
    "a.ack_note, a.published_at, l.lot_number, s.serial_number"
)
_JOINS = "LEFT JOIN lots l ON l.id = a.lot_id LEFT JOIN serials s ON s.id = a.serial_id"
ALERT_FROM = f"alerts a {_JOINS}"
CHANGED_FROM = f"a {_JOINS}"  # the rows a data-modifying CTE named `a` returned
INSERT_SQL = text(
    "WITH a AS (INSERT INTO alerts (dedupe_key, kind, rule, process_id, characteristic, test_point_id, result_id, "
    "lot_id, serial_id, station, value, cpk, threshold, baseline_id, point_time) VALUES (:dedupe_key, :kind, :rule, "
    ":process_id, :characteristic, :test_point, :result_id, :lot_id, :serial_id, :station, :value, :cpk, "
    ":threshold, :baseline_id, :point_time) ON CONFLICT (dedupe_key) DO NOTHING RETURNING *) "
    f"SELECT {ALERT_COLUMNS} FROM {CHANGED_FROM}"
)
OPEN_CPK_SQL = text(
    "SELECT EXISTS (SELECT 1 FROM alerts WHERE kind = 'cpk_low' AND status = 'open' AND process_id = :process_id "
    "AND characteristic = :characteristic AND test_point_id IS NOT DISTINCT FROM :test_point)"
)
ACK_SQL = text(
    "WITH a AS (UPDATE alerts SET status = 'acknowledged', acknowledged_by = :actor, acknowledged_at = now(), "
    "ack_note = :note WHERE id = :id AND status = 'open' RETURNING *) "
    f"SELECT {ALERT_COLUMNS} FROM {CHANGED_FROM}"
)
ONE_SQL = text(f"SELECT {ALERT_COLUMNS} FROM {ALERT_FROM} WHERE a.id = :id")
UNPUBLISHED_SQL = text(
    f"SELECT {ALERT_COLUMNS} FROM {ALERT_FROM} WHERE a.published_at IS NULL ORDER BY a.id LIMIT :limit"
)
MARK_PUBLISHED_SQL = text("UPDATE alerts SET published_at = now() WHERE id = ANY(:ids)")
NOTIFY_SQL = text("SELECT pg_notify('mes_events', :payload)")
CURSOR_SQL = text("SELECT last_result_id FROM alert_cursor WHERE name = :name FOR UPDATE")
INIT_CURSOR_SQL = text(
    "INSERT INTO alert_cursor (name, last_result_id) VALUES (:name, :id) ON CONFLICT (name) DO NOTHING"
)
SAVE_CURSOR_SQL = text("UPDATE alert_cursor SET last_result_id = :id, updated_at = now() WHERE name = :name")
HIGH_WATER_SQL = text("SELECT COALESCE(pg_sequence_last_value('process_results_id_seq'), 0)")
WRITERS_SQL = text(
    "SELECT COALESCE(array_agg(DISTINCT virtualtransaction), '{}') FROM pg_locks WHERE locktype = 'relation' "
    "AND relation = 'process_results'::regclass AND mode = 'RowExclusiveLock' AND granted "
    "AND pid <> pg_backend_pid()"
)
# Each transaction holds the lock on its own virtual id for its whole life.
SETTLED_SQL = text(
    "SELECT NOT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'virtualxid' "
    "AND virtualxid = ANY(CAST(:writers AS text[])))"
)
# The new points: every measured value of the completions in (after, upto], with the station that sent them.
# Bounded in time by those completions (a unit's values are measured between its start and completion): on a
# hypertable only the recent chunks are read, never the compressed years that have no index on result_id.
SPAN_SQL = text(
    "SELECT min(start_time) - interval '1 day', max(complete_time) + interval '1 day' FROM process_results "
    "WHERE id > :after AND id <= :upto"
)
NEW_POINTS_SQL = text(
    "SELECT DISTINCT m.process_id, m.characteristic, m.test_point_id FROM measurements m "
    "WHERE m.time >= :low AND m.time <= :high AND m.result_id > :after AND m.result_id <= :upto "
    "AND m.value IS NOT NULL"
)
STATIONS_SQL = text("SELECT id, source_station, serial_id FROM process_results WHERE id > :after AND id <= :upto")


@dataclass(frozen=True, slots=True)
class AlertRow:
    id: int
    kind: str
    rule: int | None
    process_id: str
    characteristic: str
    test_point_id: str | None
    result_id: int
    station: str | None
    value: float | None
    cpk: float | None
    threshold: float | None
    baseline_id: int | None
    point_time: datetime
    raised_at: datetime
    status: str
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    ack_note: str | None
    published_at: datetime | None
    lot_number: str | None
    serial_number: str | None


@dataclass(frozen=True, slots=True)
class NewAlert:
    dedupe_key: str
    kind: str
    rule: int | None
    process_id: str
    characteristic: str
    test_point: str | None
    result_id: int
    lot_id: int | None
    serial_id: int | None
    station: str | None
    value: float | None
    cpk: float | None
    threshold: float | None
    baseline_id: int | None
    point_time: datetime


@dataclass(frozen=True, slots=True)
class SeriesKey:
    process_id: str
    characteristic: str
    test_point: str | None


@dataclass(frozen=True, slots=True)
class ResultSource:
    station: str | None
    serial_id: int | None


async def insert(conn: AsyncConnection, alert: NewAlert) -> AlertRow | None:
    """The stored alert, or None when this very alert (same dedupe key) was stored before."""
    params: dict[str, Any] = {
        "dedupe_key": alert.dedupe_key,
        "kind": alert.kind,
        "rule": alert.rule,
        "process_id": alert.process_id,
        "characteristic": alert.characteristic,
        "test_point": alert.test_point,
        "result_id": alert.result_id,
        "lot_id": alert.lot_id,
        "serial_id": alert.serial_id,
        "station": alert.station,
        "value": alert.value,
        "cpk": alert.cpk,
        "threshold": alert.threshold,
        "baseline_id": alert.baseline_id,
        "point_time": alert.point_time,
    }
    row = (await conn.execute(INSERT_SQL, params)).first()
    return AlertRow(*row) if row else None


async def has_open_cpk(conn: AsyncConnection, key: SeriesKey) -> bool:
    params = {"process_id": key.process_id, "characteristic": key.characteristic, "test_point": key.test_point}
    return bool((await conn.execute(OPEN_CPK_SQL, params)).scalar_one())


async def acknowledge(conn: AsyncConnection, alert_id: int, actor: str, note: str | None) -> AlertRow | None:
    """The acknowledged alert; None when it does not exist or was acknowledged before (see `one`)."""
    row = (await conn.execute(ACK_SQL, {"id": alert_id, "actor": actor, "note": note})).first()
    return AlertRow(*row) if row else None


async def one(conn: AsyncConnection, alert_id: int) -> AlertRow | None:
    row = (await conn.execute(ONE_SQL, {"id": alert_id})).first()
    return AlertRow(*row) if row else None


async def listing(conn: AsyncConnection, where: list[str], params: dict[str, Any], limit: int) -> list[AlertRow]:
    """Alerts matching fixed filter clauses (built by the service from a closed set), newest first."""
    clause = " AND ".join(where) if where else "TRUE"
    sql = text(f"SELECT {ALERT_COLUMNS} FROM {ALERT_FROM} WHERE {clause} ORDER BY a.id DESC LIMIT :limit")
    result = await conn.execute(sql, {**params, "limit": limit})
    return [AlertRow(*row) for row in result.all()]


async def unpublished(conn: AsyncConnection, limit: int) -> list[AlertRow]:
    return [AlertRow(*row) for row in (await conn.execute(UNPUBLISHED_SQL, {"limit": limit})).all()]


async def mark_published(conn: AsyncConnection, ids: list[int]) -> None:
    await conn.execute(MARK_PUBLISHED_SQL, {"ids": ids})


async def notify(conn: AsyncConnection, payload: dict[str, Any]) -> None:
    """On the live-events channel (migration 0011); delivered at commit, like the tables' own triggers."""
    await conn.execute(NOTIFY_SQL, {"payload": json.dumps(payload, ensure_ascii=False, separators=(",", ":"))})


async def lock_cursor(conn: AsyncConnection, name: str, start_at: int) -> int:
    """The cursor, locked until commit (two ingestors take turns); created at `start_at` the first time."""
    await conn.execute(INIT_CURSOR_SQL, {"name": name, "id": start_at})
    return int((await conn.execute(CURSOR_SQL, {"name": name})).scalar_one())


async def save_cursor(conn: AsyncConnection, name: str, last_result_id: int) -> None:
    await conn.execute(SAVE_CURSOR_SQL, {"name": name, "id": last_result_id})


async def high_water(conn: AsyncConnection) -> int:
    return int((await conn.execute(HIGH_WATER_SQL)).scalar_one())


async def writers(conn: AsyncConnection) -> tuple[str, ...]:
    """Virtual ids of the transactions that may hold an id of process_results not yet committed."""
    return tuple(str(v) for v in (await conn.execute(WRITERS_SQL)).scalar_one())


async def settled(conn: AsyncConnection, writers: tuple[str, ...]) -> bool:
    if not writers:
        return True
    return bool((await conn.execute(SETTLED_SQL, {"writers": list(writers)})).scalar_one())


async def new_series(conn: AsyncConnection, after: int, upto: int) -> list[SeriesKey]:
    low, high = (await conn.execute(SPAN_SQL, {"after": after, "upto": upto})).one()
    if low is None:
        return []
    params = {"after": after, "upto": upto, "low": low, "high": high}
    return [SeriesKey(*row) for row in (await conn.execute(NEW_POINTS_SQL, params)).all()]


async def result_sources(conn: AsyncConnection, after: int, upto: int) -> dict[int, ResultSource]:
    result = await conn.execute(STATIONS_SQL, {"after": after, "upto": upto})
    return {row[0]: ResultSource(row[1], row[2]) for row in result.all()}
