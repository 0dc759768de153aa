"""GET /api/v1/dashboard/today on a filled database (issue 13: ≤ 50 ms at the 3-year scale of `mes demo-data`).

Runs the use case (services/dashboard.today: the four statements of adapters/dashboard_sql.py) in-process
`--runs` times against `--database-url` (default MES_DATABASE_URL) and prints P50/P95/P99; `--explain` also prints
`EXPLAIN (ANALYZE, BUFFERS)` of each statement for the same window. `--date` picks the production day (default:
the one running now; `mes demo-data` ends its data today).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from datetime import date
from zoneinfo import ZoneInfo

from sqlalchemy import text

from bench._stack import percentiles
from cloud_api.adapters import dashboard_sql as sql
from cloud_api.adapters.database import Database, make_engine
from cloud_api.services import dashboard
from mes_contracts.route import LAST_PROCESS

STATEMENTS = {
    "process counts": (sql.PROCESS_COUNTS_SQL, ("start", "end")),
    "LOTs in progress": (sql.ACTIVE_LOTS_SQL, ("shift", "limit")),
    "units": (sql.UNITS_SQL, ("start", "end", "last")),
    "LOTs created": (sql.LOTS_CREATED_SQL, ("day", "shift")),
}


async def run(url: str, runs: int, day: date | None, shift: str | None, explain: bool) -> None:
    engine = make_engine(url, 2)
    db = Database(engine, ZoneInfo(os.environ.get("MES_TIMEZONE", "Asia/Seoul")), 8)
    try:
        board = await dashboard.today(db, day, shift)  # warm the pool and the caches
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            await dashboard.today(db, day, shift)
            samples.append((time.perf_counter() - started) * 1000)
        stats = percentiles(samples)
        label = f"dashboard/today ({board['production_date']}, shift {shift or 'all'}), {runs} runs"
        print(f"{label}: p50 {stats['p50']} ms, p95 {stats['p95']} ms, p99 {stats['p99']} ms, max {stats['max']} ms")
        print(f"  totals {board['totals']}, units {board['units']}, LOTs in progress {len(board['lots_in_progress'])}")
        async with engine.connect() as conn:
            counts = {
                t: (await conn.execute(text(f"SELECT count(*) FROM {t}"))).scalar_one()
                for t in ("lots", "serials", "process_runs", "process_results")
            }
        print(f"  rows: {counts}")
        if explain:
            span = dashboard.board_window(db, day, shift)
            values = {
                "start": span.start,
                "end": span.end,
                "shift": shift,
                "limit": dashboard.ACTIVE_LOTS_LIMIT,
                "last": LAST_PROCESS.process_id,
                "day": span.production_date,
            }
            async with engine.begin() as conn:
                await sql.without_jit(conn)  # as the API runs them
                for name, (statement, keys) in STATEMENTS.items():
                    plan = await conn.execute(
                        text(f"EXPLAIN (ANALYZE, BUFFERS) {statement}"), {k: values[k] for k in keys}
                    )
                    print(f"\n--- {name}\n" + "\n".join(row[0] for row in plan))
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", default=os.environ.get("MES_DATABASE_URL"))
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--date", type=date.fromisoformat, default=None)
    parser.add_argument("--shift", choices=["D", "N"], default=None)
    parser.add_argument("--explain", action="store_true")
    args = parser.parse_args()
    if not args.database_url:
        raise SystemExit("dashboard_today: give --database-url or set MES_DATABASE_URL")
    asyncio.run(run(args.database_url, args.runs, args.date, args.shift, args.explain))


if __name__ == "__main__":
    main()
