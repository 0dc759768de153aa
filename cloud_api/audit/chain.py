"""Audit chain verification: recompute every row's hash outside the database and check the links between rows."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

log = logging.getLogger(__name__)

GENESIS = "0" * 64  # prev_hash of the first row (migration 0004)

# jsonb columns as their jsonb text: that text, not a Python re-encoding, is what the database hashed.
ROWS_SQL = text(
    "SELECT a.id, a.occurred_at, a.actor, a.action, a.entity, a.entity_key, a.old_value::text AS old_text, "
    "a.new_value::text AS new_text, a.reason, a.request_id, a.prev_hash, a.row_hash, "
    "audit_row_hash(a) AS db_hash FROM audit_log a WHERE a.id >= :from_id ORDER BY a.id"
)
BEFORE_SQL = text("SELECT id, row_hash FROM audit_log WHERE id < :from_id ORDER BY id DESC LIMIT 1")
HASH_OF_SQL = text("SELECT row_hash FROM audit_log WHERE id = :id")


@dataclass(frozen=True, slots=True)
class ChainRow:
    id: int
    occurred_at: datetime
    actor: str
    action: str
    entity: str
    entity_key: str | None
    old_text: str | None
    new_text: str | None
    reason: str | None
    request_id: str | None
    prev_hash: str
    row_hash: str
    db_hash: str | None = None


def _string(value: str | None) -> str:
    # The same escaping as PostgreSQL's jsonb output: \" \\ \b \f \n \r \t, other controls as \u00xx.
    return "null" if value is None else json.dumps(value, ensure_ascii=False)


def canonical_text(row: ChainRow) -> str:
    """audit_row_text() of migration 0004, byte for byte: jsonb_build_array(...)::text."""
    moment = row.occurred_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    parts = [
        str(row.id),
        _string(moment),
        _string(row.actor),
        _string(row.action),
        _string(row.entity),
        _string(row.entity_key),
        row.old_text or "null",
        row.new_text or "null",
        _string(row.reason),
        _string(row.request_id),
    ]
    return "[" + ", ".join(parts) + "]"


def compute_hash(row: ChainRow) -> str:
    return hashlib.sha256((row.prev_hash + canonical_text(row)).encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Break:
    """The first row that does not check out, and why."""

    row_id: int
    reason: str


@dataclass
class ChainVerifier:
    """Feed rows in id order; the first inconsistency is kept in `broken` and later rows are ignored."""

    expected_prev: str = GENESIS
    previous_id: int | None = None
    checked: int = 0
    first_id: int | None = None
    broken: Break | None = None
    _before_previous: str | None = field(default=None, repr=False)

    def feed(self, row: ChainRow) -> Break | None:
        if self.broken is not None:
            return self.broken
        self.broken = self._check(row)
        if self.broken is None:
            self.checked += 1
            self.first_id = row.id if self.first_id is None else self.first_id
            self._before_previous, self.expected_prev, self.previous_id = self.expected_prev, row.row_hash, row.id
        return self.broken

    def _check(self, row: ChainRow) -> Break | None:
        recomputed = compute_hash(row)
        if row.prev_hash != self.expected_prev:
            return self._link_break(row)
        if recomputed != row.row_hash:
            return Break(row.id, "row changed: its stored hash does not match its content")
        if row.db_hash is not None and row.db_hash != recomputed:
            return Break(row.id, "the database's audit_row_hash() disagrees with the verifier (function altered?)")
        return None

    def _link_break(self, row: ChainRow) -> Break:
        if self.previous_id is None:
            return Break(row.id, f"chain broken at its start: rows before {row.id} were removed or changed")
        if row.prev_hash == self._before_previous:
            return Break(
                self.previous_id, f"row {self.previous_id} was inserted: row {row.id} chains to the row before it"
            )
        if row.id > self.previous_id + 1:
            return Break(
                row.id,
                f"chain broken: row {row.id} does not follow row {self.previous_id}; a row between them was removed",
            )
        return Break(
            row.id,
            f"chain broken: row {row.id} does not follow row {self.previous_id} (a row was inserted or re-chained)",
        )


@dataclass(frozen=True, slots=True)
class VerifyResult:
    checked: int
    first_id: int | None
    last_id: int | None
    last_hash: str | None
    broken: Break | None

    @property
    def ok(self) -> bool:
        return self.broken is None


def _chain_row(row: Any) -> ChainRow:
    return ChainRow(
        row.id,
        row.occurred_at,
        row.actor,
        row.action,
        row.entity,
        row.entity_key,
        row.old_text,
        row.new_text,
        row.reason,
        row.request_id,
        row.prev_hash,
        row.row_hash,
        row.db_hash,
    )


async def verify_chain(
    conn: AsyncConnection, from_id: int = 1, progress: Callable[[int], None] | None = None
) -> VerifyResult:
    """Walk the chain from `from_id` (trusting the row before it), streaming rows with a server-side cursor."""
    start = (await conn.execute(BEFORE_SQL, {"from_id": from_id})).first()
    verifier = ChainVerifier(start.row_hash if start else GENESIS, start.id if start else None)
    result = await conn.stream(ROWS_SQL.execution_options(yield_per=2000), {"from_id": from_id})
    async for row in result:
        if verifier.feed(_chain_row(row)) is not None:
            break
        if progress is not None and verifier.checked % 100_000 == 0:
            progress(verifier.checked)
    await result.close()
    last_id = verifier.previous_id if verifier.checked else None
    last_hash = verifier.expected_prev if verifier.checked else None
    return VerifyResult(verifier.checked, verifier.first_id, last_id, last_hash, verifier.broken)


async def check_anchor(conn: AsyncConnection, row_id: int, expected_hash: str) -> Break | None:
    """A hash recorded elsewhere earlier: the row must still exist with that hash (catches a cut-off tail)."""
    found = (await conn.execute(HASH_OF_SQL, {"id": row_id})).scalar()
    if found is None:
        return Break(row_id, "anchored row is missing (the tail of the chain was removed)")
    if found != expected_hash.lower():
        return Break(row_id, "anchored row's hash differs from the recorded one (chain rewritten)")
    return None
