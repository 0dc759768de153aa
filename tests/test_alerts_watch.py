"""The alert watch's use case on a real PostgreSQL, in-process: a step that fails before commit leaves nothing
(the cursor did not move), the next step stores each alert once, a replay from an older cursor adds no row or
audit row, the commit horizon waits for an older open transaction, and publishing marks only what the broker
took. Each test uses its own cursor name and test point, so a running ingestor's watch cannot disturb it."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from cloud_api.adapters import alerts_sql
from cloud_api.adapters.alerts_sql import AlertRow
from cloud_api.adapters.database import Database
from cloud_api.services import alert_evaluation as evaluation
from cloud_api.services.handlers import handle_completion
from cloud_api.services.process_complete import CompletionSource
from deploy.localstack.services import PostgresServer
from line_simulator.clock import KST
from line_simulator.payloads import completion_record
from mes_contracts.alerts import AlertMessage
from mes_contracts.envelope import Outcome
from tests.support.batch_lots import LANG, STATION, lot_at

pytestmark = pytest.mark.plain_pg

AT = datetime(2026, 3, 9, 10, 0, tzinfo=KST)
PARAMS = evaluation.WatchParams(window=50, min_points=20, cpk_threshold=0.0, confidence=0.95)


@pytest.fixture
async def database(postgres: PostgresServer) -> AsyncIterator[Database]:
    engine = create_async_engine(postgres.url, pool_size=4)
    yield Database(engine, ZoneInfo("Asia/Seoul"))
    await engine.dispose()


async def _complete_with_force(db: Database, lot: str, point: str, force: float) -> None:
    points = [{"test_point_id": point, "spec": {"target_force": 50, "tolerance": 5}, "result": "PASS",
               "measured_force": force}]  # fmt: skip
    data = {"test_results": points, "overall_result": "PASS", "tested_at": (AT + timedelta(seconds=50)).isoformat()}
    record = completion_record(
        "PROC-006", lot, "W001", AT, AT + timedelta(minutes=1), random.Random(0), process_data=data
    )
    answer = await handle_completion(db, record, CompletionSource(STATION, uuid.uuid4(), None, None), LANG)
    assert answer.outcome is Outcome.ACCEPTED, answer


def _baseline(dsn: str, point: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO spc_baselines (process_id, characteristic, test_point_id, chart, subgroup, version, "
            "period_from, period_to, mu, sigma, points, values_count, reason, created_by) VALUES ('PROC-006', "
            "'force', %s, 'imr', '1', 1, %s, %s, 50, 0.1, 25, 25, 'test', 'test')",
            (point, AT - timedelta(days=1), AT),
        )


def _count(dsn: str, query: str, *args: Any) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query, args).fetchone()
    return int(row[0]) if row else 0


def _is_mine(event: dict[str, Any], point: str) -> bool:
    return event.get("kind") == "alert" and event["items"][0]["test_point"] == point


async def _settled_step(db: Database, cursor: str) -> None:
    horizon = await evaluation.take_horizon(db)
    assert await evaluation.is_settled(db, horizon)
    while await evaluation.step(db, PARAMS, horizon, cursor):
        pass


async def test_alerts_are_stored_once_across_failure_and_replay(
    database: Database, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    cursor, point = f"test-{uuid.uuid4().hex[:8]}", f"W_{uuid.uuid4().hex[:8]}"
    lot = await lot_at(database, "PROC-006", AT)
    _baseline(postgres.dsn, point)
    await _settled_step(database, cursor)  # a new cursor starts at the horizon: history raises nothing
    start = _count(postgres.dsn, "SELECT last_result_id FROM alert_cursor WHERE name = %s", cursor)
    await _complete_with_force(database, lot, point, 53.0)

    async def crash(*args: Any) -> None:
        raise RuntimeError("ingestor killed before commit")

    monkeypatch.setattr(alerts_sql, "save_cursor", crash)
    with pytest.raises(RuntimeError):
        await _settled_step(database, cursor)
    monkeypatch.undo()
    rows = "SELECT count(*) FROM alerts WHERE test_point_id = %s"
    audits = (
        "SELECT count(*) FROM audit_log a JOIN alerts x ON a.entity = 'alert' AND a.entity_key = x.id::text "
        "WHERE x.test_point_id = %s"
    )
    cursor_sql = "SELECT last_result_id FROM alert_cursor WHERE name = %s"
    assert _count(postgres.dsn, cursor_sql, cursor) == start  # rolled back with the alerts

    await _settled_step(database, cursor)
    assert _count(postgres.dsn, rows, point) == 1
    assert _count(postgres.dsn, "SELECT rule FROM alerts WHERE test_point_id = %s", point) == 1
    assert _count(postgres.dsn, audits, point) == 1
    assert _count(postgres.dsn, cursor_sql, cursor) > start

    with psycopg.connect(postgres.dsn, autocommit=True) as conn:  # a lost cursor: judge the same points again
        conn.execute("UPDATE alert_cursor SET last_result_id = %s WHERE name = %s", (start, cursor))
    await _settled_step(database, cursor)
    assert _count(postgres.dsn, rows, point) == 1 and _count(postgres.dsn, audits, point) == 1


async def test_the_horizon_waits_for_an_open_writer(database: Database, postgres: PostgresServer) -> None:
    with psycopg.connect(postgres.dsn) as writer:
        # What an inserter holds from before it draws an id until it ends (here without drawing one).
        writer.execute("LOCK TABLE process_results IN ROW EXCLUSIVE MODE")
        horizon = await evaluation.take_horizon(database)
        assert horizon.writers and not await evaluation.is_settled(database, horizon)
        writer.commit()
    assert await evaluation.is_settled(database, horizon)


async def test_publishing_marks_only_what_the_broker_took(database: Database, postgres: PostgresServer) -> None:
    cursor, point = f"test-{uuid.uuid4().hex[:8]}", f"P_{uuid.uuid4().hex[:8]}"
    lot = await lot_at(database, "PROC-006", AT)
    _baseline(postgres.dsn, point)
    await _settled_step(database, cursor)
    await _complete_with_force(database, lot, point, 46.0)  # 40 sigma below: rule 1
    with psycopg.connect(postgres.dsn, autocommit=True) as listener:
        listener.execute("LISTEN mes_events")
        await _settled_step(database, cursor)
        event = next(
            (e for e in map(lambda n: json.loads(n.payload), listener.notifies(timeout=10)) if _is_mine(e, point)),
            None,
        )
        assert event is not None and event["op"] == "INSERT" and event["items"][0]["rule"] == 1
    seen: list[AlertMessage] = []

    async def refuse(row: AlertRow, payload: bytes) -> bool:
        return row.test_point_id != point

    async def take(row: AlertRow, payload: bytes) -> bool:
        if row.test_point_id == point:
            seen.append(AlertMessage.from_bytes(payload))
        return True

    published = "SELECT count(*) FROM alerts WHERE test_point_id = %s AND published_at IS NOT NULL"
    await evaluation.publish_pending(database, refuse)
    assert _count(postgres.dsn, published, point) == 0
    await evaluation.publish_pending(database, take)
    assert _count(postgres.dsn, published, point) == 1
    assert len(seen) == 1 and seen[0].rule == 1 and seen[0].value == 46.0 and seen[0].lot_number == lot
    assert "rule 1" in seen[0].message_en and seen[0].station == STATION
