"""SQL of the live production view: today's counts per process, LOTs in progress, units, and the LISTEN link.

Every count reads a time range through an index (process_runs start_time / complete_time, process_results
complete_time, the partial index of STARTED runs from migration 0011, the active-LOT partial index of 0001), so
the board costs the same on the first day and after three years. The functions returning SQL text exist so a
bench can EXPLAIN exactly what the API runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime

import psycopg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.adapters.database import libpq_dsn

CHANNEL = "mes_events"

PROCESS_COUNTS_SQL = """
WITH win AS (
    SELECT id, lot_id, serial_id, process_id, result FROM process_results
    WHERE complete_time >= :start AND complete_time < :end
),
-- A result is a first pass when it is the first result of its LOT (or unit) at that process, ever. Per LOT and
-- process of the window through the (lot_id, process_id) index: reads those groups only, never the whole table.
firsts AS (
    SELECT f.id FROM (SELECT DISTINCT lot_id, process_id FROM win) g
    CROSS JOIN LATERAL (
        SELECT DISTINCT ON (p.serial_id) p.id FROM process_results p
        WHERE p.lot_id = g.lot_id AND p.process_id = g.process_id ORDER BY p.serial_id, p.id
    ) f
),
results AS (
    SELECT w.process_id,
        count(*) FILTER (WHERE w.result = 'PASS') AS passed,
        count(*) FILTER (WHERE w.result = 'FAIL') AS failed,
        count(f.id) AS first_results,
        count(f.id) FILTER (WHERE w.result = 'PASS') AS first_passed
    FROM win w LEFT JOIN firsts f ON f.id = w.id GROUP BY w.process_id
),
started AS (
    SELECT process_id, count(*) AS n FROM process_runs
    WHERE start_time >= :start AND start_time < :end GROUP BY process_id
),
completed AS (
    SELECT process_id, count(*) AS n FROM process_runs
    WHERE complete_time >= :start AND complete_time < :end GROUP BY process_id
),
running AS (
    SELECT process_id, count(*) AS n FROM process_runs
    WHERE status = 'STARTED' AND start_time < :end GROUP BY process_id
)
SELECT s.process_id, COALESCE(st.n, 0) AS started, COALESCE(c.n, 0) AS completed,
    COALESCE(r.passed, 0) AS passed, COALESCE(r.failed, 0) AS failed, COALESCE(ru.n, 0) AS in_progress,
    COALESCE(r.first_results, 0) AS first_results, COALESCE(r.first_passed, 0) AS first_passed
FROM process_steps s
LEFT JOIN started st ON st.process_id = s.process_id
LEFT JOIN completed c ON c.process_id = s.process_id
LEFT JOIN results r ON r.process_id = s.process_id
LEFT JOIN running ru ON ru.process_id = s.process_id
ORDER BY s.sequence
"""

ACTIVE_LOTS_SQL = """
SELECT l.lot_number, l.status, l.shift, l.production_date, l.target_quantity, pm.model_name,
    COALESCE(runs.completed, '{}') AS completed, COALESCE(runs.started, '{}') AS started,
    (SELECT count(*) FROM serials s WHERE s.lot_id = l.id) AS serials,
    -- FILTER, not WHERE: with `result = 'FAIL'` in WHERE the planner ANDs in the index of every FAIL ever (3 ms a
    -- LOT at three years); the LOT's own few hundred results are cheaper to read.
    (SELECT count(*) FILTER (WHERE pr.result = 'FAIL') FROM process_results pr WHERE pr.lot_id = l.id) AS failed_results
FROM lots l
JOIN product_models pm ON pm.id = l.product_model_id
LEFT JOIN LATERAL (
    SELECT array_agg(r.process_id) FILTER (WHERE r.status = 'COMPLETED') AS completed,
        array_agg(r.process_id) FILTER (WHERE r.status = 'STARTED') AS started
    FROM process_runs r WHERE r.lot_id = l.id AND r.serial_id IS NULL
) runs ON true
WHERE l.status IN ('CREATED', 'IN_PROGRESS') AND (CAST(:shift AS text) IS NULL OR l.shift = :shift)
ORDER BY l.created_at, l.id
LIMIT :limit
"""

# Units that left the line in the window: a unit-level PASS at the last process is one unit; a LOT-level PASS is
# every serial of that LOT not FAILED (a LOT counted once, however many LOT-level results it has).
UNITS_SQL = """
WITH passed AS (
    SELECT lot_id, serial_id FROM process_results
    WHERE complete_time >= :start AND complete_time < :end AND process_id = :last AND result = 'PASS'
)
SELECT (SELECT count(DISTINCT serial_id) FROM passed WHERE serial_id IS NOT NULL)
    + (SELECT count(*) FROM serials s WHERE s.status <> 'FAILED'
       AND s.lot_id IN (SELECT lot_id FROM passed WHERE serial_id IS NULL)) AS units
"""

LOTS_CREATED_SQL = """
SELECT count(*) FROM lots WHERE production_date = :day AND (CAST(:shift AS text) IS NULL OR shift = :shift)
"""


@dataclass(frozen=True, slots=True)
class ProcessCounts:
    process_id: str
    started: int
    completed: int
    passed: int
    failed: int
    in_progress: int
    first_results: int
    first_passed: int


@dataclass(frozen=True, slots=True)
class ActiveLot:
    lot_number: str
    status: str
    shift: str
    production_date: date
    target_quantity: int
    model_name: str
    completed: list[str]
    started: list[str]
    serials: int
    failed_results: int


async def without_jit(conn: AsyncConnection) -> None:
    """For the rest of the caller's transaction. On three years of data the planner over-estimates the window's
    groups, crosses jit_above_cost and spends ~230 ms compiling a query that runs in ~20 ms (bench README)."""
    await conn.execute(text("SET LOCAL jit = off"))


async def process_counts(conn: AsyncConnection, start: datetime, end: datetime) -> list[ProcessCounts]:
    rows = await conn.execute(text(PROCESS_COUNTS_SQL), {"start": start, "end": end})
    return [ProcessCounts(*row) for row in rows]


async def active_lots(conn: AsyncConnection, shift: str | None, limit: int) -> list[ActiveLot]:
    rows = await conn.execute(text(ACTIVE_LOTS_SQL), {"shift": shift, "limit": limit})
    return [ActiveLot(*row) for row in rows]


async def units_completed(conn: AsyncConnection, start: datetime, end: datetime, last_process: str) -> int:
    row = await conn.execute(text(UNITS_SQL), {"start": start, "end": end, "last": last_process})
    return int(row.scalar_one())


async def lots_created(conn: AsyncConnection, day: date, shift: str | None) -> int:
    row = await conn.execute(text(LOTS_CREATED_SQL), {"day": day, "shift": shift})
    return int(row.scalar_one())


async def listen(database_url: str) -> AsyncIterator[str]:
    """Payloads of `mes_events` notifications as they arrive, on one dedicated autocommit connection; raises
    psycopg.Error / OSError when the link breaks (the caller reconnects). The first item is "" once listening."""
    async with await psycopg.AsyncConnection.connect(libpq_dsn(database_url), autocommit=True) as conn:
        await conn.execute(f"LISTEN {CHANNEL}")
        yield ""
        async for notify in conn.notifies():
            yield notify.payload
