"""LOTs for the batch, start and ingest tests: a `database` fixture, new LOTs, LOTs advanced to a process."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from cloud_api.adapters.database import Database
from cloud_api.services.handlers import handle_completion, handle_start
from cloud_api.services.lots import CreateLot, create_lot
from cloud_api.services.process_complete import CompletionSource
from deploy.localstack.services import PostgresServer
from line_simulator.payloads import completion_record, start_request
from mes_contracts.envelope import Outcome
from mes_contracts.numbering import Shift
from mes_contracts.route import ROUTE

LANG = "ko"
STATION = "KR/L1/st01"


@pytest.fixture
async def database(postgres: PostgresServer) -> AsyncIterator[Database]:
    engine = create_async_engine(postgres.url, pool_size=4)
    yield Database(engine, ZoneInfo("Asia/Seoul"))
    await engine.dispose()


async def new_lot(db: Database) -> str:
    async with db.transaction() as conn:
        return str((await create_lot(db, conn, CreateLot(shift=Shift.DAY), "test"))["lot_number"])


async def start(db: Database, lot: str, process_id: str, at: datetime) -> None:
    answer = await handle_start(db, start_request(process_id, lot, "W001", at), STATION, uuid.uuid4(), LANG)
    assert answer.outcome is Outcome.ACCEPTED, answer


async def lot_at(db: Database, process_id: str | None, at: datetime) -> str:
    """A new LOT whose processes before `process_id` are completed and `process_id` is started (None: not started)."""
    lot = await new_lot(db)
    if process_id is None:
        return lot
    for step in ROUTE:
        await start(db, lot, step.process_id, at)
        if step.process_id == process_id:
            return lot
        record = completion_record(step.process_id, lot, "W001", at, at + timedelta(seconds=1), random.Random(0))
        source = CompletionSource(STATION, uuid.uuid4(), None, None)
        assert (await handle_completion(db, record, source, LANG)).outcome is Outcome.ACCEPTED
    raise AssertionError(process_id)
