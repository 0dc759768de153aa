"""Read side: LOT detail with per-process state (FR-DASH-002, TC-LOT-006) and LOT lists."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.adapters import repository as repo
from cloud_api.adapters.database import Database
from cloud_api.adapters.rows import ProcessRunRow
from cloud_api.domain.errors import DomainError
from mes_contracts.errors import ErrorCode
from mes_contracts.route import ROUTE


def _iso(db: Database, moment: datetime | None) -> str | None:
    return db.local(moment).isoformat() if moment is not None else None


async def lot_detail(db: Database, conn: AsyncConnection, lot_number: str, lang: str = "ko") -> dict[str, Any]:
    lot = await repo.find_lot(conn, lot_number)
    if lot is None:
        raise DomainError(ErrorCode.LOT_NOT_FOUND, {"lot_number": lot_number})
    runs = {run.process_id: run for run in await repo.runs_of_lot(conn, lot.id)}
    processes = [
        _process_state(db, step.process_id, step.name(lang), step.sequence, runs.get(step.process_id)) for step in ROUTE
    ]
    completed = sum(1 for p in processes if p["status"] == "COMPLETED")
    current = next((p for p in processes if p["status"] != "COMPLETED"), None)
    return {
        "lot_number": lot.lot_number,
        "product_model": lot.model_name,
        "model_code": lot.model_code,
        "target_quantity": lot.target_quantity,
        "shift": lot.shift,
        "production_date": lot.production_date.isoformat(),
        "status": lot.status,
        "created_by": lot.created_by,
        "created_at": _iso(db, lot.created_at),
        "progress": {
            "completed_processes": completed,
            "total_processes": len(ROUTE),
            "percent": round(100 * completed / len(ROUTE)),
        },
        "current_process": current["process_id"] if current else None,
        "processes": processes,
        "status_history": await _history(db, conn, lot.id),
        "component_lots": await _components(conn, lot.id),
        "serials": await _serials(conn, lot.id),
    }


def _process_state(
    db: Database, process_id: str, name: str, sequence: int, run: ProcessRunRow | None
) -> dict[str, Any]:
    state: dict[str, Any] = {
        "process_id": process_id,
        "process_name": name,
        "sequence": sequence,
        "status": "NOT_STARTED",
    }
    if run is not None:
        state.update(
            {
                "status": run.status,
                "work_order_id": run.work_order_id,
                "start_time": _iso(db, run.start_time),
                "start_worker_id": run.start_worker_id,
                "complete_time": _iso(db, run.complete_time),
                "complete_worker_id": run.complete_worker_id,
                "result": run.result,
                "completion_count": run.completion_count,
            }
        )
    return state


async def _history(db: Database, conn: AsyncConnection, lot_id: int) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text(
            "SELECT from_status, to_status, changed_at, actor, reason FROM lot_status_history "
            "WHERE lot_id = :id ORDER BY changed_at, id"
        ),
        {"id": lot_id},
    )
    return [
        {
            "from_status": r.from_status,
            "to_status": r.to_status,
            "changed_at": _iso(db, r.changed_at),
            "actor": r.actor,
            "reason": r.reason,
        }
        for r in rows
    ]


async def _components(conn: AsyncConnection, lot_id: int) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text("SELECT process_id, component_kind, component_lot FROM component_lots WHERE lot_id = :id ORDER BY id"),
        {"id": lot_id},
    )
    return [dict(r) for r in rows.mappings()]


async def _serials(conn: AsyncConnection, lot_id: int) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text("SELECT serial_number, sequence, status FROM serials WHERE lot_id = :id ORDER BY sequence"),
        {"id": lot_id},
    )
    return [dict(r) for r in rows.mappings()]


@dataclass(frozen=True, slots=True)
class ComponentFilter:
    """`?component_lot=` (and `?component_kind=`): only LOTs that consumed that component lot (issue 13)."""

    lot: str | None = None
    kind: str | None = None


async def list_lots(
    db: Database,
    conn: AsyncConnection,
    production_day: date | None,
    status: str | None,
    limit: int,
    component: ComponentFilter = ComponentFilter(),
) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text(
            "SELECT l.lot_number, l.status, l.shift, l.production_date, l.target_quantity, l.created_at, "
            "pm.model_name, (SELECT count(*) FROM process_runs r WHERE r.lot_id = l.id AND r.status = 'COMPLETED') "
            "AS completed_processes FROM lots l JOIN product_models pm ON pm.id = l.product_model_id "
            "WHERE (CAST(:day AS date) IS NULL OR l.production_date = :day) "
            "AND (CAST(:status AS text) IS NULL OR l.status = :status) "
            "AND (CAST(:component AS text) IS NULL OR EXISTS (SELECT 1 FROM component_lots c WHERE c.lot_id = l.id "
            "AND c.component_lot = :component AND (CAST(:kind AS text) IS NULL OR c.component_kind = :kind))) "
            "ORDER BY l.created_at DESC, l.id DESC LIMIT :limit"
        ),
        {
            "day": production_day,
            "status": status,
            "limit": limit,
            "component": component.lot,
            "kind": component.kind,
        },
    )
    return [
        {
            "lot_number": r.lot_number,
            "status": r.status,
            "shift": r.shift,
            "production_date": r.production_date.isoformat(),
            "target_quantity": r.target_quantity,
            "product_model": r.model_name,
            "created_at": _iso(db, r.created_at),
            "completed_processes": r.completed_processes,
            "total_processes": len(ROUTE),
        }
        for r in rows
    ]
