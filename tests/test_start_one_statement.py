"""An allowed start is written by one statement; a LOT that changed under it or a racing start fall back safely."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from cloud_api.adapters.database import Database
from cloud_api.services import handlers
from cloud_api.services.handlers import handle_completion, handle_start, parse_start_request
from cloud_api.services.process_complete import CompletionSource
from cloud_api.services.process_start import PlannedStart, StartOrigin, plan_start, write_planned_start
from deploy.localstack.services import PostgresServer
from line_simulator.clock import KST
from line_simulator.payloads import completion_record, start_request
from mes_contracts.envelope import Outcome
from tests.support.batch_lots import LANG, STATION, lot_at, new_lot

pytestmark = pytest.mark.plain_pg  # issue 14: also run on plain PostgreSQL (test.sh's second pass)

AT = datetime(2026, 3, 2, 10, 0, tzinfo=KST)  # a work day of its own: the counter checks see only these tests


@pytest.fixture
async def database(postgres: PostgresServer) -> AsyncIterator[Database]:
    engine = create_async_engine(postgres.url, pool_size=4)
    yield Database(engine, ZoneInfo("Asia/Seoul"))
    await engine.dispose()


def one(dsn: str, query: str, *args: Any) -> Any:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query, args).fetchone()
    return row[0] if row else None


def counter(dsn: str) -> int:
    return int(one(dsn, "SELECT last_value FROM work_order_sequences WHERE work_day = %s", AT.date()) or 0)


async def plan(db: Database, lot: str, process_id: str, message_id: uuid.UUID) -> PlannedStart:
    request = parse_start_request(start_request(process_id, lot, "W002", AT))
    async with db.autocommit() as conn:
        planned = await plan_start(db, conn, request, StartOrigin(STATION, message_id, LANG))
    assert planned is not None
    return planned


async def write(db: Database, planned: PlannedStart) -> str | None:
    async with db.autocommit() as conn:
        return await write_planned_start(conn, planned, None)


async def test_an_allowed_start_stores_run_answer_and_audit_with_the_new_work_order(
    database: Database, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def locked_path(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an allowed start must not need the locked path")

    monkeypatch.setattr(handlers, "start_process", locked_path)
    lot, message_id = await new_lot(database), uuid.uuid4()
    answer = await handle_start(database, start_request("PROC-001", lot, "W002", AT), STATION, message_id, LANG)

    assert answer.outcome is Outcome.ACCEPTED and answer.http_status == 200
    work_order = answer.body["data"]["work_order_id"]
    assert work_order.startswith("WO-20260302-") and work_order == f"WO-20260302-{counter(postgres.dsn):03d}"
    dsn = postgres.dsn
    assert one(dsn, "SELECT response FROM processed_messages WHERE message_id = %s", message_id) == answer.body
    assert (
        one(
            dsn,
            "SELECT r.work_order_id FROM process_runs r JOIN lots l ON l.id = r.lot_id "
            "WHERE l.lot_number = %s AND r.process_id = 'PROC-001'",
            lot,
        )
        == work_order
    )
    assert (
        one(
            dsn,
            "SELECT new_value->>'work_order_id' FROM audit_log WHERE action = 'process.start' AND request_id = %s",
            str(message_id),
        )
        == work_order
    )
    assert one(dsn, "SELECT status FROM lots WHERE lot_number = %s", lot) == "IN_PROGRESS"
    assert (
        one(
            dsn,
            "SELECT count(*) FROM lot_status_history h JOIN lots l ON l.id = h.lot_id "
            "WHERE l.lot_number = %s AND h.to_status = 'IN_PROGRESS'",
            lot,
        )
        == 1
    )
    assert one(dsn, "SELECT count(*) FROM audit_log WHERE request_id = %s", str(message_id)) == 2

    monkeypatch.undo()  # a redelivery is refused by the state the first delivery made: the locked path answers
    again = await handle_start(database, start_request("PROC-001", lot, "W002", AT), STATION, message_id, LANG)
    assert again.outcome is Outcome.DUPLICATE and again.body == answer.body


async def test_a_lot_closed_after_the_read_is_refused_and_nothing_is_written(
    database: Database, postgres: PostgresServer
) -> None:
    lot = await new_lot(database)
    planned = await plan(database, lot, "PROC-001", uuid.uuid4())
    before = counter(postgres.dsn)
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute("UPDATE lots SET status = 'CLOSED' WHERE lot_number = %s", (lot,))

    assert await write(database, planned) is None
    assert counter(postgres.dsn) == before
    assert (
        one(
            postgres.dsn,
            "SELECT count(*) FROM process_runs r JOIN lots l ON l.id = r.lot_id WHERE l.lot_number = %s",
            lot,
        )
        == 0
    )
    # The locked path decides from the LOT as it is now.
    answer = await handle_start(database, start_request("PROC-001", lot, "W002", AT), STATION, uuid.uuid4(), LANG)
    assert answer.outcome is Outcome.REJECTED and answer.body["error_code"] == "INVALID_PROCESS_SEQUENCE"


async def test_a_worker_disabled_after_the_read_is_refused_and_nothing_is_written(
    database: Database, postgres: PostgresServer
) -> None:
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO workers (worker_id, name) VALUES ('W950', '곧 퇴사') ON CONFLICT (worker_id) "
            "DO UPDATE SET active = true"
        )
    lot = await new_lot(database)
    request = parse_start_request(start_request("PROC-001", lot, "W950", AT))
    async with database.autocommit() as conn:
        planned = await plan_start(database, conn, request, StartOrigin(STATION, uuid.uuid4(), LANG))
    assert planned is not None
    before = counter(postgres.dsn)
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute("UPDATE workers SET active = false WHERE worker_id = 'W950'")

    assert await write(database, planned) is None
    assert counter(postgres.dsn) == before
    answer = await handle_start(database, start_request("PROC-001", lot, "W950", AT), STATION, uuid.uuid4(), LANG)
    assert answer.outcome is Outcome.REJECTED and answer.body["error_code"] == "WORKER_NOT_FOUND"


async def test_a_racing_start_of_the_same_process_leaves_nothing_and_gets_duplicate_start(
    database: Database, postgres: PostgresServer
) -> None:
    lot = await lot_at(database, "PROC-001", AT)  # IN_PROGRESS: the status guard passes for both starts
    record = completion_record("PROC-001", lot, "W002", AT, AT + timedelta(minutes=1), random.Random(1))
    completed = await handle_completion(database, record, CompletionSource(STATION, uuid.uuid4(), None, None), LANG)
    assert completed.outcome is Outcome.ACCEPTED
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    first, second = await plan(database, lot, "PROC-002", theirs), await plan(database, lot, "PROC-002", mine)
    won = await write(database, first)
    assert won is not None
    before = counter(postgres.dsn)
    audit_before = one(postgres.dsn, "SELECT count(*) FROM audit_log")

    with pytest.raises(IntegrityError):
        await write(database, second)
    assert counter(postgres.dsn) == before
    assert one(postgres.dsn, "SELECT count(*) FROM audit_log") == audit_before

    answer = await handle_start(database, start_request("PROC-002", lot, "W002", AT), STATION, mine, LANG)
    assert answer.outcome is Outcome.REJECTED and answer.body["error_code"] == "DUPLICATE_START"
    assert answer.body["data"]["work_order_id"] == won


async def test_a_rest_start_is_audited_under_the_signed_in_user_and_stores_no_message(
    database: Database, postgres: PostgresServer
) -> None:
    lot = await new_lot(database)
    answer = await handle_start(
        database, start_request("PROC-001", lot, "W002", AT), STATION, None, LANG, actor="t-manager"
    )
    assert answer.outcome is Outcome.ACCEPTED
    found = one(
        postgres.dsn,
        "SELECT json_agg(json_build_array(actor, new_value->>'work_order_id') ORDER BY id) "
        "FROM audit_log WHERE entity_key = %s",
        f"{lot}/PROC-001",
    )
    assert found == [["t-manager", answer.body["data"]["work_order_id"]]]
    assert (
        one(postgres.dsn, "SELECT count(*) FROM processed_messages WHERE response->'data'->>'lot_number' = %s", lot)
        == 0
    )
