"""Async SQLAlchemy engine creation and the transaction helper use cases run in."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from psycopg.conninfo import make_conninfo
from sqlalchemy.dialects.postgresql.psycopg import PGDialectAsync_psycopg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


def make_engine(url: str, pool_size: int = 10, pool_timeout: float = 5.0) -> AsyncEngine:
    # No pre-ping: it costs a round trip per transaction. A connection broken by a database restart fails its
    # statement instead; the API answers 503 and the ingestor retries, and the pool drops the connection.
    # pool_timeout: how long a checkout waits when every connection is in use (MES_DB_POOL_TIMEOUT_S).
    # At most 2 × MES_DB_POOL_SIZE connections, as before, but all of them kept once opened (no overflow): an
    # overflow connection is closed when given back, so under 100 Locust users the API opened and closed
    # PostgreSQL backends (TimescaleDB load, SCRAM) at every peak (bench/README.md, "the Locust lead").
    return create_async_engine(
        url, pool_size=2 * pool_size, max_overflow=0, pool_recycle=1800, pool_timeout=pool_timeout
    )


def libpq_dsn(database_url: str) -> str:
    """The SQLAlchemy URL as a libpq connection string for a plain psycopg link (LISTEN), made with the
    dialect's own connect arguments: a multi-host URL (`?host=h1:p1&host=h2:p2&target_session_attrs=read-write`,
    docs/ops/ha.md) keeps every host, which rendering the URL again would not (libpq keeps the last `host=`)."""
    _, params = PGDialectAsync_psycopg().create_connect_args(make_url(database_url))
    return make_conninfo("", **params)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Database:
    """What a use case needs from the outside world: a transaction, a clock and the factory's zone."""

    engine: AsyncEngine
    zone: ZoneInfo
    shift_day_start_hour: int = 8
    clock: Callable[[], datetime] = field(default=utc_now)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncConnection]:
        """A connection on which every statement is its own transaction: no BEGIN and COMMIT round trips."""
        async with self.engine.connect() as conn:
            yield await conn.execution_options(isolation_level="AUTOCOMMIT")

    def now(self) -> datetime:
        return self.clock()

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.zone)
