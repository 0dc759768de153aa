"""The ingestor's start (착공) in one round trip: `mes_start_processes` (migration 0015) on psycopg (issue 18.3).

One prepared statement (`prepare=True`) on a few autocommit connections the ingestor keeps: no SQLAlchemy pool
checkout, isolation-level switch or Core compile/result layers per call. For each start of a call the function
looks the message id up, checks the start rules that need the database, and writes run, status change, stored
answer and audit rows, or answers `duplicate` (a redelivered accepted start) or `fallback` (anything else:
services/start_fast.py then hands the start to the locked path). What the database checks is given to it by the
domain (services/start_fast.py builds the call; tests/test_start_function_rules.py runs every rule case both ways).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any, NamedTuple, TypedDict

import psycopg
from psycopg.pq import TransactionStatus

from cloud_api.domain.lots import ACTIVE_STATUSES, LotStatus, status_after_start
from mes_contracts.envelope import MessageType

CONNECT_TIMEOUT_S = 5
# ":name" (a bind parameter), not "::type" (a cast) nor a colon inside a word.
_BIND = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def psycopg_sql(clause: Any) -> str:
    """A SQLAlchemy text() statement in psycopg's named-parameter style (a literal % doubled)."""
    return _BIND.sub(r"%(\1)s", str(clause.text).replace("%", "%%"))


class StartCall(TypedDict):
    """One start as mes_start_processes reads it (JSON); `n` is its position in the call."""

    n: int
    message_id: str
    source: str
    lot_number: str
    process_id: str
    sequence: int
    previous_process_id: str | None
    worker_id: str
    start_time: str  # ISO 8601 with its offset
    work_day: str  # ISO date
    prefix: str
    change_reason: str
    body: dict[str, Any]  # the answer to store; the function sets data.work_order_id
    audit: list[dict[str, Any]]  # rows as audit/sql.py's insert reads them, always written
    change_audit: list[dict[str, Any]]  # rows written only when the start changes the LOT's status


class StartResult(NamedTuple):
    """One start's answer from the function. `n`: its position in the call; outcome: accepted | duplicate |
    fallback; `body`: the stored answer of a duplicate; `fallback_reason`: which rule (or 'answered': a stored
    answer that is not an accepted start's, or a message id met twice in the call) sent it to the locked path."""

    n: int
    outcome: str
    http_status: int | None
    work_order_id: str | None
    body: dict[str, Any] | None
    fallback_reason: str | None


# The same for every start, from the domain and the contracts, written into the statement once rather than
# dumped per call: the message type, the statuses a start may begin from and the one status change a start makes.
MESSAGE_TYPE = MessageType.PROCESS_START_REQUEST.value
ACTIVE = sorted(status.value for status in ACTIVE_STATUSES)
_CHANGES = [(s, after) for s in LotStatus if (after := status_after_start(s)) is not None]
assert len(_CHANGES) == 1, "mes_start_processes applies one status change: migration 0015 must follow the domain"
CHANGE_FROM, CHANGE_TO = _CHANGES[0][0].value, _CHANGES[0][1].value


def _literal(value: str) -> str:
    assert re.fullmatch(r"[A-Za-z_.]+", value), value  # enum values: nothing to escape
    return f"'{value}'"


_START_SQL = (
    f"SELECT * FROM mes_start_processes(%s::jsonb, {_literal(MESSAGE_TYPE)}, "
    f"ARRAY[{', '.join(map(_literal, ACTIVE))}], {_literal(CHANGE_FROM)}, {_literal(CHANGE_TO)})"
)


class FastStartConnections:
    """A few autocommit psycopg connections, each with its own prepared statement; opened when first needed.

    A connection is reused only if it came back idle and unbroken: one that failed mid-statement (a database
    restart, a cancelled task) is closed, and the next start opens a fresh one, so the ingestor's retry loop
    (runner._with_db_retry) sees the same transient errors as on the SQLAlchemy path.
    """

    def __init__(self, dsn: str, size: int) -> None:
        self._dsn = dsn
        self._slots = asyncio.Semaphore(size)
        self._idle: list[psycopg.AsyncConnection[Any]] = []

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with self._slots:
            conn = self._idle.pop() if self._idle else await self._open()
            try:
                yield conn
            finally:
                if conn.closed or conn.broken or conn.info.transaction_status is not TransactionStatus.IDLE:
                    with suppress(Exception):
                        await conn.close()
                else:
                    self._idle.append(conn)

    async def _open(self) -> psycopg.AsyncConnection[Any]:
        # Bounded: an unreachable host must not hold a start (and the retry loop behind it) for the OS's TCP
        # timeout; the locked path answers meanwhile.
        return await psycopg.AsyncConnection.connect(self._dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            with suppress(Exception):
                await conn.close()


async def start_processes(conn: psycopg.AsyncConnection[Any], starts: str) -> list[StartResult]:
    """One round trip: mes_start_processes as a prepared statement, `starts` the JSON array of StartCall; one
    result per start, in their order. Raises psycopg.Error for the whole call on a racing run or answer (a unique
    key), a deadlock, a database gone away, or a database without migration 0015 (UndefinedFunction)."""
    cursor = await conn.execute(_START_SQL, (starts,), prepare=True)
    return [StartResult(*row) for row in await cursor.fetchall()]
