"""Use case: today's board (GET /api/v1/dashboard/today; FR-DASH-001/002, TC-DASH-001/002).

What each number counts (README, "Live production view"):
- started: runs (LOT-level or unit-level) whose start time is in the window;
- completed: runs whose first completion is in the window;
- passed / failed: completion results in the window by verdict (each file is one; re-tests count again);
- in_progress: runs still STARTED now that started before the window's end;
- first-pass yield per process: of the results in the window that were the first of their LOT (or unit) at that
  process, the share that passed; overall: the product over the processes that tested something.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from cloud_api.adapters import dashboard_sql as sql
from cloud_api.adapters.database import Database
from cloud_api.domain.dashboard import Window, place_of, production_day_of, rolled_yield, window, yield_of
from mes_contracts.route import LAST_PROCESS, ROUTE, get_step

ACTIVE_LOTS_LIMIT = 200


def board_window(db: Database, day: date | None, shift: str | None) -> Window:
    """The window asked for: the given production day (default: the one running now), whole or one shift."""
    today = production_day_of(db.local(db.now()), db.shift_day_start_hour)
    return window(day or today, shift, db.shift_day_start_hour, db.zone)


async def today(db: Database, day: date | None, shift: str | None, lang: str = "ko") -> dict[str, Any]:
    span = board_window(db, day, shift)
    async with db.transaction() as conn:  # one snapshot for all four reads
        await sql.without_jit(conn)
        counts = await sql.process_counts(conn, span.start, span.end)
        lots = await sql.active_lots(conn, shift, ACTIVE_LOTS_LIMIT)
        units = await sql.units_completed(conn, span.start, span.end, LAST_PROCESS.process_id)
        created = await sql.lots_created(conn, span.production_date, shift)
    processes = [_process(row, lang) for row in counts]
    hours = span.elapsed_hours(db.now())
    return {
        "production_date": span.production_date.isoformat(),
        "shift": shift,
        "window": {"from": db.local(span.start).isoformat(), "to": db.local(span.end).isoformat()},
        "generated_at": db.local(db.now()).isoformat(),
        "totals": _totals(processes, created),
        "first_pass_yield": rolled_yield([p["first_pass_yield"] for p in processes]),
        "processes": processes,
        "lots_in_progress": [_lot(lot, lang) for lot in lots],
        "units": {"completed": units, "hours": round(hours, 3), "per_hour": round(units / hours, 2)},
    }


def _process(row: sql.ProcessCounts, lang: str) -> dict[str, Any]:
    step = get_step(row.process_id)
    return {
        "process_id": row.process_id,
        "process_name": step.name(lang),
        "sequence": step.sequence,
        "started": row.started,
        "completed": row.completed,
        "passed": row.passed,
        "failed": row.failed,
        "in_progress": row.in_progress,
        "first_results": row.first_results,
        "first_passed": row.first_passed,
        "first_pass_yield": yield_of(row.first_passed, row.first_results),
    }


def _totals(processes: list[dict[str, Any]], lots_created: int) -> dict[str, int]:
    totals = {key: sum(p[key] for p in processes) for key in ("started", "completed", "passed", "failed")}
    totals["in_progress"] = sum(p["in_progress"] for p in processes)
    totals["lots_created"] = lots_created
    return totals


def _lot(lot: sql.ActiveLot, lang: str) -> dict[str, Any]:
    place = place_of(frozenset(lot.completed), frozenset(lot.started))
    current = get_step(place.current_process) if place.current_process else None
    return {
        "lot_number": lot.lot_number,
        "status": lot.status,
        "shift": lot.shift,
        "production_date": lot.production_date.isoformat(),
        "product_model": lot.model_name,
        "target_quantity": lot.target_quantity,
        "current_process": place.current_process,
        "current_process_name": current.name(lang) if current else None,
        "current_state": "STARTED" if place.running else "WAITING",
        "completed_processes": place.completed,
        "total_processes": len(ROUTE),
        "percent": place.percent,
        "serials": lot.serials,
        "failed_results": lot.failed_results,
    }
