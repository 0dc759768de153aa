"""Shared by tests/test_start_function_*.py (the MQTT start in one round trip, migration 0015): a pool of
fast-start connections, a spy on the locked path, a start through the function, two SQL shortcuts."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from cloud_api.adapters import start_fast as adapter
from cloud_api.adapters.database import Database
from cloud_api.services import start_fast as service
from cloud_api.services.handlers import Answer
from deploy.localstack.services import PostgresServer
from tests.support.batch_lots import LANG, STATION


@pytest.fixture
async def conns(postgres: PostgresServer) -> AsyncIterator[adapter.FastStartConnections]:
    pool = adapter.FastStartConnections(postgres.dsn, 4)
    yield pool
    await pool.close()


@pytest.fixture
def locked_calls(monkeypatch: pytest.MonkeyPatch) -> list[uuid.UUID | None]:
    """The message ids that reached the locked path (handlers.handle_start), which still answers them."""
    calls: list[uuid.UUID | None] = []
    real = service.handle_start

    async def spy(db: Database, raw: Any, source: str, message_id: uuid.UUID | None, *args: Any, **kw: Any) -> Answer:
        calls.append(message_id)
        return await real(db, raw, source, message_id, *args, **kw)

    monkeypatch.setattr(service, "handle_start", spy)
    return calls


async def _start(
    db: Database, conns: Any, body: dict[str, Any], message_id: uuid.UUID | None = None, lang: str = LANG
) -> Answer:
    return await service.handle_station_start(db, conns, body, STATION, message_id or uuid.uuid4(), lang)


def _complete(dsn: str, lot: str, process_id: str) -> None:
    """Mark the LOT's run of a process COMPLETED (the completion path is tested elsewhere)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE process_runs SET status = 'COMPLETED' FROM lots l WHERE l.id = process_runs.lot_id "
            "AND l.lot_number = %s AND process_runs.process_id = %s",
            (lot, process_id),
        )


def _sql(dsn: str, query: str, *args: Any) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(query, args)
