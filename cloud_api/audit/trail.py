"""Audit trail writes: one append-only, hash-chained audit_log row per change, in the caller's transaction."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from pathlib import PurePath
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.audit.sql import insert_from_json

log = logging.getLogger(__name__)

# Set by the HTTP middleware (X-Request-ID); MQTT-driven use cases fall back to the message id.
REQUEST_ID: ContextVar[str | None] = ContextVar("mes_request_id", default=None)

INSERT_SQL = text(insert_from_json("rows"))


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit row as a caller describes it (the database adds id, time and hashes)."""

    actor: str
    action: str
    entity: str
    entity_key: str | None
    old: dict[str, Any] | None = None
    new: dict[str, Any] | None = None
    reason: str | None = None
    request_id: str | None = None


# Inside `deferred_audit()`, rows wait here and are written by whoever closes the scope (one round trip fewer).
_DEFERRED: ContextVar[list[AuditEntry] | None] = ContextVar("mes_deferred_audit", default=None)


def current_request_id() -> str | None:
    return REQUEST_ID.get()


@contextmanager
def request_id_scope(request_id: str | None) -> Iterator[None]:
    """Make `request_id` the current one inside the block (the ingestor: one message at a time per task)."""
    token = REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        REQUEST_ID.reset(token)


@contextmanager
def deferred_audit() -> Iterator[list[AuditEntry]]:
    """Collect the block's audit rows instead of writing them; the caller writes the list before commit.

    The transactional entry point (services/handlers.run_once) writes them in the statement that stores the
    message's answer: the audit insert is then the last write of the transaction, as the chain lock wants.
    """
    pending: list[AuditEntry] = []
    token = _DEFERRED.set(pending)
    try:
        yield pending
    finally:
        _DEFERRED.reset(token)


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | PurePath):
        return str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return sorted(value, key=str) if isinstance(value, set | frozenset) else list(value)
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "model_dump"):  # pydantic models
        return value.model_dump(mode="json")
    raise TypeError(f"cannot record {type(value).__name__} in the audit trail")


def to_jsonable(value: dict[str, Any] | None) -> Any:
    """Dates, UUIDs, enums, decimals … as JSON text values; None stays SQL NULL."""
    if value is None:
        return None
    return json.loads(json.dumps(value, default=_default, ensure_ascii=False))


def _row(n: int, entry: AuditEntry) -> dict[str, Any]:
    return {
        "n": n,
        "actor": entry.actor,
        "action": entry.action,
        "entity": entry.entity,
        "entity_key": entry.entity_key,
        "old_value": to_jsonable(entry.old),
        "new_value": to_jsonable(entry.new),
        "reason": entry.reason,
        "request_id": entry.request_id if entry.request_id is not None else current_request_id(),
    }


async def record_audit(
    conn: AsyncConnection,
    *,
    actor: str,
    action: str,
    entity: str,
    entity_key: str | None,
    old: dict[str, Any] | None = None,
    new: dict[str, Any] | None = None,
    reason: str | None = None,
    request_id: str | None = None,
) -> None:
    """Append one audit row in the caller's transaction (request_id: the current request's unless given).

    Call it last in the transaction: the insert takes the chain's lock, held until commit, and a row lock taken
    after it could deadlock with a transaction that holds that row and waits for the chain.
    """
    await record_audit_many(conn, [AuditEntry(actor, action, entity, entity_key, old, new, reason, request_id)])


async def record_audit_many(conn: AsyncConnection, entries: Sequence[AuditEntry]) -> None:
    """Append several audit rows with one statement, chained in the given order (batches of completions)."""
    if not entries:
        return
    pending = _DEFERRED.get()
    if pending is not None:
        pending.extend(entries)
        return
    rows = [_row(n, entry) for n, entry in enumerate(entries)]
    await conn.execute(INSERT_SQL, {"rows": json.dumps(rows, ensure_ascii=False)})
    log.debug("audit: %s row(s), first %s %s", len(rows), rows[0]["action"], rows[0]["entity_key"])


def rows_json(entries: Sequence[AuditEntry]) -> str:
    """The JSON the batch SQL hands to jsonb_to_recordset for `entries` (same columns as INSERT_SQL)."""
    return json.dumps([_row(n, entry) for n, entry in enumerate(entries)], ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Read API filters; every one optional. `before_id` pages backwards (newest first)."""

    actor: str | None = None
    action: str | None = None
    entity: str | None = None
    entity_key: str | None = None
    request_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_id: int | None = None


# Fixed clauses only; values always travel as bind parameters.
_CLAUSES = {
    "actor": "actor = :actor",
    "action": "action = :action",
    "entity": "entity = :entity",
    "entity_key": "entity_key = :entity_key",
    "request_id": "request_id = :request_id",
    "since": "occurred_at >= :since",
    "until": "occurred_at < :until",
    "before_id": "id < :before_id",
}


async def list_audit(conn: AsyncConnection, where: AuditFilter, limit: int) -> list[dict[str, Any]]:
    """Audit rows matching every given filter, newest first, at most `limit`."""
    params: dict[str, Any] = {name: getattr(where, name) for name in _CLAUSES if getattr(where, name) is not None}
    conditions = " AND ".join(_CLAUSES[name] for name in params) or "true"
    rows = await conn.execute(
        text(
            "SELECT id, occurred_at, actor, action, entity, entity_key, old_value, new_value, reason, request_id, "
            f"row_hash FROM audit_log WHERE {conditions} ORDER BY id DESC LIMIT :limit"
        ),
        {**params, "limit": limit},
    )
    return [dict(row) for row in rows.mappings()]


def station_actor(worker_id: str, source: str) -> str:
    """Who acted through a station: the worker at the station ("W001@st03"; source "KR/L1/st03" or "rest")."""
    return f"{worker_id}@{source.rsplit('/', 1)[-1]}"
