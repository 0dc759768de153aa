"""Worker registry: operators whose ids the stations send as worker_id."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.audit.trail import record_audit
from cloud_api.auth.repository import name_taken
from cloud_api.domain.errors import DomainError
from mes_contracts.errors import ErrorCode
from mes_contracts.workers import WorkerId


class WorkerIn(BaseModel):
    worker_id: WorkerId  # mes_contracts/workers.py: the one worker-id rule
    name: str = Field(min_length=1, max_length=100)
    active: bool = True


async def upsert_worker(conn: AsyncConnection, worker: WorkerIn, actor: str = "system") -> dict[str, Any]:
    # Locked so the audit row's old value is the one this upsert replaced.
    before = await conn.execute(
        text("SELECT worker_id, name, active FROM workers WHERE worker_id = :w FOR UPDATE"), {"w": worker.worker_id}
    )
    old = before.mappings().first()
    if old is None and await name_taken(conn, worker.worker_id) is not None:
        # `workers` is a view of the operator users: a manager's name, or W001 as w001, is not a new operator.
        raise DomainError(ErrorCode.DUPLICATE_USER, {"username": worker.worker_id})
    row = await conn.execute(
        text(
            "INSERT INTO workers (worker_id, name, active) VALUES (:w, :n, :a) ON CONFLICT (worker_id) "
            "DO UPDATE SET name = EXCLUDED.name, active = EXCLUDED.active RETURNING worker_id, name, active"
        ),
        {"w": worker.worker_id, "n": worker.name, "a": worker.active},
    )
    new = dict(row.mappings().one())
    await record_audit(
        conn,
        actor=actor,
        action="worker.upsert",
        entity="worker",
        entity_key=worker.worker_id,
        old=dict(old) if old else None,
        new=new,
    )
    return new


async def list_workers(conn: AsyncConnection) -> list[dict[str, Any]]:
    rows = await conn.execute(text("SELECT worker_id, name, active FROM workers ORDER BY worker_id"))
    return [dict(r) for r in rows.mappings()]
