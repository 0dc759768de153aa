"""Audit trail read API (admins): who did what, when, what it was before, and why — newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from cloud_api.audit.trail import AuditFilter, list_audit
from cloud_api.http.deps import AdminDep, DbDep
from cloud_api.http.query_guard import QueryGuard

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

# PostgreSQL text cannot hold NUL: refused here (422) rather than failing in the query.
Text = Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00]*$")]
MAX_ID = 2**63 - 1


@router.get(
    "",
    summary="Audit rows with filters, newest first (admin); page with next_before_id",
    dependencies=[QueryGuard],
)
async def audit_rows(
    db: DbDep,
    principal: AdminDep,
    actor: Text = None,
    action: Text = None,
    entity: Text = None,
    entity_key: Text = None,
    request_id: Text = None,
    from_time: Annotated[AwareDatetime | None, Query(alias="from", description="occurred_at >= (ISO 8601)")] = None,
    to_time: Annotated[AwareDatetime | None, Query(alias="to", description="occurred_at < (ISO 8601)")] = None,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Cursor: rows with a smaller id")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    where = AuditFilter(actor, action, entity, entity_key, request_id, from_time, to_time, before_id)
    async with db.engine.connect() as conn:
        rows = await list_audit(conn, where, limit)
    items = [_shown(db.local, row) for row in rows]
    next_before_id = rows[-1]["id"] if len(rows) == limit else None
    return {"status": "success", "data": {"items": items, "next_before_id": next_before_id}}


def _shown(local: Any, row: dict[str, Any]) -> dict[str, Any]:
    moment: datetime = row["occurred_at"]
    return {**row, "occurred_at": local(moment).isoformat()}
