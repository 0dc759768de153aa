"""Worker registry: operators whose ids the stations send as worker_id."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


class WorkerIn(BaseModel):
    worker_id: str = Field(min_length=1, max_length=50, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = Field(min_length=1, max_length=100)
    active: bool = True


async def upsert_worker(conn: AsyncConnection, worker: WorkerIn) -> dict[str, Any]:
    row = await conn.execute(
        text(
            "INSERT INTO workers (worker_id, name, active) VALUES (:w, :n, :a) ON CONFLICT (worker_id) "
            "DO UPDATE SET name = EXCLUDED.name, active = EXCLUDED.active RETURNING worker_id, name, active"
        ),
        {"w": worker.worker_id, "n": worker.name, "a": worker.active},
    )
    return dict(row.mappings().one())


async def list_workers(conn: AsyncConnection) -> list[dict[str, Any]]:
    rows = await conn.execute(text("SELECT worker_id, name, active FROM workers ORDER BY worker_id"))
    return [dict(r) for r in rows.mappings()]
