"""The plain-PostgreSQL stand-in for TimescaleDB's refresh policies: the ingestor refreshes the measurement rollups.

On TimescaleDB the continuous aggregates have their own policies (migration 0010) and this task ends at once.
On plain PostgreSQL the rollup views are exact without it (dirty hours are computed from the raw rows at query
time); refreshing only keeps that raw part small. Every `MES_ROLLUP_REFRESH_S` seconds, up to
`MAX_DIRTY_ROWS` dirty rows per transaction, repeated while there are more.
"""

from __future__ import annotations

import asyncio
import logging

from cloud_api.adapters import rollup_sql
from cloud_api.adapters.database import Database

log = logging.getLogger(__name__)
MAX_DIRTY_ROWS = 5000


async def refresh_once(db: Database, max_rows: int = MAX_DIRTY_ROWS) -> rollup_sql.Refreshed | None:
    """Refresh until no dirty row is left (or another session is refreshing); the total, None if skipped."""
    hours = days = rows = 0
    while True:
        async with db.transaction() as conn:
            done = await rollup_sql.refresh(conn, max_rows)
        if done is None:
            return None
        hours, days, rows = hours + done.hours, days + done.days, rows + done.dirty_rows
        if done.dirty_rows < max_rows:
            return rollup_sql.Refreshed(hours, days, rows)


async def needs_refresher(db: Database) -> bool:
    async with db.engine.connect() as conn:
        return await rollup_sql.engine(conn) == "plain"


async def run(db: Database, interval_s: float) -> None:
    """Until cancelled. A failed refresh is logged and tried again next time (the views stay exact meanwhile)."""
    if interval_s <= 0:
        return
    try:
        if not await needs_refresher(db):
            log.info("measurement rollups: TimescaleDB policies refresh them (or no rollups); no refresher needed")
            return
    except Exception:
        log.exception("measurement rollups: cannot tell the database's kind; refresher not started")
        return
    log.info("measurement rollups: refreshing every %.0f s (plain PostgreSQL)", interval_s)
    while True:
        try:
            done = await refresh_once(db)
            if done is not None and done.dirty_rows:
                log.info("measurement rollups refreshed: %d hours, %d days", done.hours, done.days)
        except Exception:
            log.exception("measurement rollup refresh failed; next try in %.0f s", interval_s)
        await asyncio.sleep(interval_s)
