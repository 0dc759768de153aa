"""Issue 18.3, the lean ingestor: reply skeletons, reused reply properties, the start on psycopg's prepared
statements (services/start_fast.py) with the same answers, stored rows and exactly-once as the SQLAlchemy path."""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cloud_api.adapters import start_fast, start_sql
from cloud_api.adapters.database import Database
from cloud_api.ingestor.handler import ReplyTemplate, reply_envelope
from cloud_api.ingestor.runner import RESPONDER
from cloud_api.services import handlers
from cloud_api.services.handlers import Answer
from cloud_api.services.start_fast import handle_station_start
from deploy.localstack.services import PostgresServer
from line_simulator.payloads import start_request
from mes_contracts.envelope import Envelope, Outcome
from tests.support.batch_lots import LANG, STATION, new_lot
from tests.test_start_one_statement import AT, database, one

__all__ = ["database"]  # the fixture, reused

_ID_AND_TIME = re.compile(rb'"(message_id|occurred_at)":"[^"]*"')


def test_reply_skeleton_writes_what_pydantic_writes() -> None:
    body = {"success": True, "message": "공정이 시작되었습니다", "data": {"x": [1, 2.5, None], "q": 'a"b\\c\n%s'}}
    answer, in_reply_to = Answer(Outcome.ACCEPTED, 200, body), uuid.uuid4()
    fast = ReplyTemplate(RESPONDER).render(in_reply_to, answer, 41)
    slow = reply_envelope(in_reply_to, answer, RESPONDER, 41).to_bytes()

    assert _ID_AND_TIME.sub(b"", fast) == _ID_AND_TIME.sub(b"", slow)
    parsed = Envelope.from_bytes(fast)
    assert parsed.payload["in_reply_to"] == str(in_reply_to) and parsed.payload["body"] == body
    assert parsed.message_id != Envelope.from_bytes(ReplyTemplate(RESPONDER).render(in_reply_to, answer, 41)).message_id


def test_a_body_json_cannot_write_takes_the_pydantic_way() -> None:
    answer = Answer(Outcome.REJECTED, 400, {"at": uuid.UUID(int=5), "nan": float("nan")})
    reply = Envelope.from_bytes(ReplyTemplate(RESPONDER).render(uuid.uuid4(), answer, 1))
    assert reply.payload["body"]["at"] == str(uuid.UUID(int=5))


def test_copied_reply_properties_are_independent_and_pack_their_own_correlation() -> None:
    template = Properties(PacketTypes.PUBLISH)
    first, second = copy.copy(template), copy.copy(template)
    object.__setattr__(first, "CorrelationData", b"one")
    object.__setattr__(second, "CorrelationData", b"two")
    assert b"one" in first.pack() and b"two" in second.pack() and b"one" not in second.pack()
    assert not hasattr(template, "CorrelationData")


def test_psycopg_sql_rewrites_binds_and_keeps_casts() -> None:
    sql = start_fast.psycopg_sql(start_sql._READ_LOT_FOR_START)
    assert "%(n)s" in sql and "%(w)s" in sql and "'[]'::json" in sql and ":n" not in sql
    for clause in start_sql._ONE_STATEMENT_SQL.values():
        assert re.search(r"(?<![:\w]):[a-z_]", start_fast.psycopg_sql(clause)) is None


@pytest.fixture
async def conns(postgres: PostgresServer) -> AsyncIterator[start_fast.FastStartConnections]:
    pool = start_fast.FastStartConnections(postgres.dsn, 2)
    yield pool
    await pool.close()


async def _start(db: Database, conns: Any, lot: str, message_id: uuid.UUID, process: str = "PROC-001") -> Answer:
    return await handle_station_start(db, conns, start_request(process, lot, "W002", AT), STATION, message_id, LANG)


async def test_a_station_start_is_written_by_prepared_statements_once(
    database: Database, conns: start_fast.FastStartConnections, postgres: PostgresServer, monkeypatch: Any
) -> None:
    async def locked_path(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an allowed start must not need the locked path")

    monkeypatch.setattr(handlers, "start_process", locked_path)
    lot, message_id = await new_lot(database), uuid.uuid4()
    answer = await _start(database, conns, lot, message_id)
    assert answer.outcome is Outcome.ACCEPTED and answer.body["data"]["work_order_id"].startswith("WO-20260302-")
    stored = one(postgres.dsn, "SELECT response FROM processed_messages WHERE message_id = %s", message_id)
    assert stored == answer.body
    assert one(postgres.dsn, "SELECT count(*) FROM audit_log WHERE request_id = %s", str(message_id)) == 2
    async with conns.connection() as conn:  # psycopg prepared its statement (one: migration 0015's function)
        cursor = await conn.execute("SELECT count(*) FROM pg_prepared_statements")
        assert ((await cursor.fetchone()) or [0])[0] >= 1

    monkeypatch.undo()  # a redelivery: the first answer, and still one run
    again = await _start(database, conns, lot, message_id)
    assert again.outcome is Outcome.DUPLICATE and again.body == answer.body
    runs = "SELECT count(*) FROM process_runs r JOIN lots l ON l.id = r.lot_id WHERE l.lot_number = %s"
    assert one(postgres.dsn, runs, lot) == 1


async def test_refusals_are_answered_and_stored_by_the_locked_path(
    database: Database, conns: start_fast.FastStartConnections, postgres: PostgresServer
) -> None:
    missing, message_id = "WF-KR-260302D-999", uuid.uuid4()
    answer = await _start(database, conns, missing, message_id)
    assert answer.outcome is Outcome.REJECTED and answer.body["error_code"] == "LOT_NOT_FOUND"
    assert one(postgres.dsn, "SELECT outcome FROM processed_messages WHERE message_id = %s", message_id) == "rejected"
    lot = await new_lot(database)
    skipped = await _start(database, conns, lot, uuid.uuid4(), "PROC-003")
    assert skipped.outcome is Outcome.REJECTED and skipped.body["error_code"] == "PREVIOUS_PROCESS_NOT_COMPLETED"


async def test_a_connection_killed_under_the_ingestor_costs_no_start(
    database: Database, conns: start_fast.FastStartConnections, postgres: PostgresServer
) -> None:
    assert (await _start(database, conns, await new_lot(database), uuid.uuid4())).outcome is Outcome.ACCEPTED
    async with conns.connection() as conn:  # the idle connection the next start will take
        pid = conn.info.backend_pid
    with psycopg.connect(postgres.dsn, autocommit=True) as admin:  # e.g. a database restart or an admin's kill
        killed = admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()
    assert killed is not None and killed[0] is True
    lot, message_id = await new_lot(database), uuid.uuid4()
    answer = await _start(database, conns, lot, message_id)  # the broken link falls back, the next one reopens
    assert answer.outcome is Outcome.ACCEPTED
    assert one(postgres.dsn, "SELECT outcome FROM processed_messages WHERE message_id = %s", message_id) == "accepted"
    assert (await _start(database, conns, await new_lot(database), uuid.uuid4())).outcome is Outcome.ACCEPTED
