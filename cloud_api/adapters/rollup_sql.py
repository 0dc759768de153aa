"""The plain-PostgreSQL rollup refresh (migration 0010): the one writer of `measurement_{hourly,daily}_store` and
the consumer of `measurement_rollup_dirty`.

The views `measurement_hourly` / `measurement_daily` already answer dirty hours (and their days) from the raw
rows; a refresh stores exactly those answers and forgets the dirty rows it read, so the aggregate SQL lives only
in the migration. Why the steps are in this order (READ COMMITTED, one transaction):
1. read the dirty rows (ids and hours) visible now: their measurements are committed;
2. per dirty hour/day, replace the stored rows by the view's rows (later snapshots: everything of step 1 and
   maybe more, which is harmless);
3. delete exactly the dirty rows read in step 1: a row committed meanwhile stays, and is refreshed next time.
An advisory lock keeps two ingestors from refreshing at once (the second skips its turn).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

REFRESH_LOCK = 5567948054382070010  # "MESA" + migration 0010
COLUMNS = (
    "bucket, process_id, characteristic, test_point_id, station, n, sum_value, sum_squares, min_value, max_value, "
    "out_of_limit, lsl, usl"
)
DAYS_OF_HOURS = (
    "SELECT DISTINCT date_trunc('day', h AT TIME ZONE z.timezone) AT TIME ZONE z.timezone "
    "FROM unnest(CAST(:hours AS timestamptz[])) AS h, measurement_rollup_settings z"
)


@dataclass(frozen=True, slots=True)
class Refreshed:
    hours: int
    days: int
    dirty_rows: int


async def engine(conn: AsyncConnection) -> str | None:
    """'timescaledb' or 'plain' as migration 0010 recorded; None before that migration."""
    exists = (await conn.execute(text("SELECT to_regclass('measurement_rollup_settings') IS NOT NULL"))).scalar()
    if not exists:
        return None
    return str((await conn.execute(text("SELECT engine FROM measurement_rollup_settings"))).scalar_one())


async def refresh(conn: AsyncConnection, max_rows: int) -> Refreshed | None:
    """One refresh inside the caller's transaction; None when another session holds the lock."""
    got = (await conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": REFRESH_LOCK})).scalar()
    if not got:
        return None
    dirty = (
        await conn.execute(text("SELECT id, hour FROM measurement_rollup_dirty ORDER BY id LIMIT :n"), {"n": max_rows})
    ).all()
    if not dirty:
        return Refreshed(0, 0, 0)
    ids = [row[0] for row in dirty]
    hours: list[datetime] = sorted({row[1] for row in dirty})
    days = [row[0] for row in await conn.execute(text(DAYS_OF_HOURS), {"hours": hours})]
    for width, buckets in (("hourly", hours), ("daily", days)):
        params = {"b": buckets}
        await conn.execute(text(f"DELETE FROM measurement_{width}_store WHERE bucket = ANY(:b)"), params)
        await conn.execute(
            text(
                f"INSERT INTO measurement_{width}_store ({COLUMNS}) "
                f"SELECT {COLUMNS} FROM measurement_{width} WHERE bucket = ANY(:b)"
            ),
            params,
        )
    await conn.execute(text("DELETE FROM measurement_rollup_dirty WHERE id = ANY(:ids)"), {"ids": ids})
    return Refreshed(len(hours), len(days), len(ids))
