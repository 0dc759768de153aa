"""The start store's fast path straight on psycopg, for the ingestor (issue 18 point 3).

The SQL is start_sql's (`read_lot_for_start` and the one-statement start), not a copy: its `:name` placeholders
are rewritten once into psycopg's `%(name)s`. What changes is the way it is sent: psycopg's own server-side
prepared statements (`prepare=True`) on a few autocommit connections the ingestor keeps, instead of a SQLAlchemy
pool checkout, an isolation-level switch and Core's compile/result layers per call. The start keeps its two round
trips (an unlocked read, then one statement that re-checks the LOT under its lock): the decision in between is
domain/start.decide_start, in Python, where the project's rules keep it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import datetime
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from cloud_api.adapters import start_sql
from cloud_api.domain.lots import LotStatus
from cloud_api.domain.start import LotForStart, RunRow

CONNECT_TIMEOUT_S = 5
# ":name" (a bind parameter), not "::type" (a cast) nor a colon inside a word.
_BIND = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def psycopg_sql(clause: Any) -> str:
    """A SQLAlchemy text() statement in psycopg's named-parameter style (a literal % doubled)."""
    return _BIND.sub(r"%(\1)s", str(clause.text).replace("%", "%%"))


_READ_SQL = psycopg_sql(start_sql._READ_LOT_FOR_START)
_ONE_STATEMENT_SQL = {key: psycopg_sql(clause) for key, clause in start_sql._ONE_STATEMENT_SQL.items()}


class FastStartConnections:
    """A few autocommit psycopg connections, each with its own prepared statements; opened when first needed.

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


async def read_lot_for_start(conn: psycopg.AsyncConnection[Any], lot_number: str, worker_id: str) -> LotForStart | None:
    """start_sql.read_lot_for_start (no lock), as a prepared statement."""
    cursor = await conn.execute(_READ_SQL, {"n": lot_number, "w": worker_id}, prepare=True)
    row = await cursor.fetchone()
    if row is None:
        return None
    lot_id, status, worker_active, runs = row
    return LotForStart(
        int(lot_id),
        LotStatus(status),
        bool(worker_active),
        tuple(
            RunRow(r["process_id"], r["status"], r["work_order_id"], datetime.fromisoformat(r["start_time"]))
            for r in runs
        ),
    )


async def start_in_one_statement(
    conn: psycopg.AsyncConnection[Any], params: dict[str, Any], status_change: bool, answer: bool
) -> tuple[int, str] | None:
    """start_sql.start_in_one_statement as a prepared statement; `params` as that function builds them.
    None when the LOT's status changed or the worker was disabled; IntegrityError on a racing run or answer."""
    cursor = await conn.execute(_ONE_STATEMENT_SQL[(status_change, answer)], params, prepare=True)
    row = await cursor.fetchone()
    return (int(row[0]), str(row[1])) if row else None
