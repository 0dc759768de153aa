"""The alert watch's use case: judge the points of newly committed completions and store the alerts they raise.

One step reads the completions in (cursor, horizon], and for every characteristic they measured draws an I-MR
chart of its newest `window` values (limits: the newest stored I-MR baseline, else the window itself once it has
`min_points` values). Each new point that completes a Nelson pattern raises one `nelson` alert per rule; a window
Cpk below the threshold raises one `cpk_low` alert while none is open for the characteristic. Alerts, their audit
rows, the NOTIFY for the console and the cursor move commit together; a dedupe key per rule and point makes a
repeated step harmless. Publishing on MQTT happens after commit, from `published_at IS NULL` (at least once;
receivers de-duplicate by alert id).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.adapters import alerts_sql, spc_sql
from cloud_api.adapters.alerts_sql import AlertRow, NewAlert, ResultSource, SeriesKey
from cloud_api.adapters.database import Database
from cloud_api.audit.trail import AuditEntry, record_audit_many
from cloud_api.domain.spc_charts import ChartType
from cloud_api.services import spc
from cloud_api.services.alerts import alert_dict, alert_message
from mes_contracts.alerts import AlertKind

CURSOR = "spc-alerts"
ACTOR = "system:alert-watch"
MAX_RESULTS_PER_STEP = 2000  # a backlog after downtime is worked off in bounded transactions
IMR = spc.ChartSpec(ChartType.IMR, "1")
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)  # the window is the newest values, whatever their time


@dataclass(frozen=True, slots=True)
class WatchParams:
    window: int
    min_points: int
    cpk_threshold: float
    confidence: float


@dataclass(frozen=True, slots=True)
class Horizon:
    high_water: int
    writers: tuple[str, ...]


async def take_horizon(db: Database) -> Horizon:
    async with db.autocommit() as conn:
        high = await alerts_sql.high_water(conn)  # first the ids, then who may still hold some (see alerts_sql)
        return Horizon(high, await alerts_sql.writers(conn))


async def is_settled(db: Database, horizon: Horizon) -> bool:
    async with db.autocommit() as conn:
        return await alerts_sql.settled(conn, horizon.writers)


async def step(db: Database, params: WatchParams, horizon: Horizon, name: str = CURSOR) -> bool:
    """Judge up to MAX_RESULTS_PER_STEP completions below the horizon; True when more remain."""
    async with db.transaction() as conn:
        # First start: begin at the horizon, so a database full of history raises no flood of old alerts.
        cursor = await alerts_sql.lock_cursor(conn, name, horizon.high_water)
        if cursor >= horizon.high_water:
            return False
        upto = min(horizon.high_water, cursor + MAX_RESULTS_PER_STEP)
        sources = await alerts_sql.result_sources(conn, cursor, upto)
        stored: list[AlertRow] = []
        for key in await alerts_sql.new_series(conn, cursor, upto):
            for alert in await _judge(conn, key, sources, params):
                row = await alerts_sql.insert(conn, alert)
                if row is not None:
                    stored.append(row)
        for row in stored:
            await alerts_sql.notify(conn, {"kind": "alert", "op": "INSERT", "items": [alert_dict(row)]})
        await alerts_sql.save_cursor(conn, name, upto)
        await record_audit_many(conn, [_audit(row) for row in stored])  # last: it takes the chain's lock
        return upto < horizon.high_water


async def _judge(
    conn: AsyncConnection, key: SeriesKey, sources: dict[int, ResultSource], params: WatchParams
) -> list[NewAlert]:
    newest = await spc_sql.recent_values(
        conn, key.process_id, key.characteristic, key.test_point, FAR_FUTURE, params.window + len(sources)
    )
    if not any(v.result_id in sources for v in newest):
        return []
    baseline = await spc_sql.current_baseline(
        conn, key.process_id, key.characteristic, key.test_point or "", IMR.chart.value, IMR.subgroup
    )
    window = newest[-max(params.window, _count_new(newest, sources)) :]
    if baseline is None and len(window) < params.min_points:
        return []
    series = spc.Series(key.process_id, key.characteristic, key.test_point)
    result = spc.evaluate(series, IMR, window[0].time, window[-1].time, window, baseline, params.confidence)
    baseline_id = baseline.id if baseline else None
    alerts: list[NewAlert] = []
    for value, rules in zip(window, result.location_rules, strict=True):
        if value.result_id not in sources:
            continue
        source = sources[value.result_id]
        for rule in rules:
            alerts.append(_new(AlertKind.NELSON, rule, key, value, source, baseline_id, None, None))
    cap = result.capability
    cpk = cap.cpk.value if cap and cap.cpk else None
    if (
        params.cpk_threshold > 0
        and cpk is not None
        and len(window) >= params.min_points
        and cpk < params.cpk_threshold
        and not await alerts_sql.has_open_cpk(conn, key)
    ):
        last = next(v for v in reversed(window) if v.result_id in sources)
        source = sources[last.result_id]
        alerts.append(_new(AlertKind.CPK_LOW, None, key, last, source, baseline_id, cpk, params.cpk_threshold))
    return alerts


def _count_new(values: list[spc_sql.ValueRow], sources: dict[int, ResultSource]) -> int:
    return sum(1 for v in values if v.result_id in sources)


def _new(
    kind: AlertKind,
    rule: int | None,
    key: SeriesKey,
    value: spc_sql.ValueRow,
    source: ResultSource,
    baseline_id: int | None,
    cpk: float | None,
    threshold: float | None,
) -> NewAlert:
    dedupe = f"{kind.value}:{rule or 0}:{key.process_id}:{key.characteristic}:{key.test_point or ''}:{value.result_id}"
    return NewAlert(
        dedupe[:300], kind.value, rule, key.process_id, key.characteristic, key.test_point, value.result_id,
        value.lot_id, source.serial_id, source.station, value.value, cpk, threshold, baseline_id, value.time,
    )  # fmt: skip


def _audit(row: AlertRow) -> AuditEntry:
    data = alert_dict(row)
    return AuditEntry(ACTOR, "alert.raise", "alert", str(row.id), None, data, data["message_en"], None)


Publisher = Callable[[AlertRow, bytes], Awaitable[bool]]


async def publish_pending(db: Database, publish: Publisher, limit: int = 200) -> int:
    """Publish stored alerts not yet published; mark those the broker took. Returns how many were published."""
    async with db.autocommit() as conn:
        rows = await alerts_sql.unpublished(conn, limit)
    done = [row.id for row in rows if await publish(row, alert_message(row).to_bytes())]
    if done:
        async with db.autocommit() as conn:
            await alerts_sql.mark_published(conn, done)
    return len(done)
