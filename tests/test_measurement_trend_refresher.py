"""The ingestor's rollup refresher (cloud_api/services/aggregate_refresh.run): on plain PostgreSQL it stores the
dirty hours and clears their marks on its own; on TimescaleDB it leaves the work to the policies and ends."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import psycopg
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from cloud_api.adapters.database import Database
from cloud_api.services import aggregate_refresh
from deploy.localstack.postgres import PostgresServer

pytestmark = pytest.mark.plain_pg

AT = datetime(2023, 1, 9, 3, 15, tzinfo=UTC)  # an hour nothing else in the suite writes


def _count(dsn: str, query: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query).fetchone()
        assert row is not None
        return int(row[0])


async def test_refresher_stores_dirty_hours_or_leaves_it_to_timescaledb(
    postgres: PostgresServer, timescaledb: bool
) -> None:
    engine = create_async_engine(postgres.url, pool_size=2)
    db = Database(engine, ZoneInfo("Asia/Seoul"))
    try:
        if timescaledb:
            # Nothing to do: the task ends at once instead of polling for ever.
            await asyncio.wait_for(aggregate_refresh.run(db, 0.05), timeout=30)
            return
        with psycopg.connect(postgres.dsn, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO measurements (time, lot_id, process_id, result_id, characteristic, value, station) "
                "VALUES (%s, 1, 'PROC-003', 1, 'refresher-check', 60.2, 'st03'), "
                "(%s, 1, 'PROC-003', 1, 'refresher-check', 59.8, 'st03')",
                (AT, AT),
            )
        stored = "SELECT count(*) FROM measurement_hourly_store WHERE characteristic = 'refresher-check'"
        dirty = f"SELECT count(*) FROM measurement_rollup_dirty WHERE hour = '{AT:%Y-%m-%d %H}:00+00'"
        assert _count(postgres.dsn, dirty) >= 1 and _count(postgres.dsn, stored) == 0
        task = asyncio.create_task(aggregate_refresh.run(db, 0.05))
        try:
            async with asyncio.timeout(60):
                while _count(postgres.dsn, stored) == 0 or _count(postgres.dsn, dirty) > 0:
                    await asyncio.sleep(0.05)  # the refresher's own period: wait for it, not a fixed time
        finally:
            task.cancel()
        with psycopg.connect(postgres.dsn) as conn:
            row = conn.execute(
                "SELECT n, sum_value, min_value, max_value FROM measurement_hourly "
                "WHERE characteristic = 'refresher-check'"
            ).fetchone()
        assert row is not None and (row[0], float(row[1]), row[2], row[3]) == (2, 120.0, 59.8, 60.2)
    finally:
        await engine.dispose()
