"""MQTT-driven changes: starts and completions (one by one and batched) audited with the message id as request id."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from cloud_api.adapters.database import Database
from cloud_api.audit.chain import verify_chain
from cloud_api.services import batch_completion as bc
from cloud_api.services.handlers import handle_start
from deploy.localstack.services import PostgresServer
from line_simulator.clock import KST
from line_simulator.payloads import start_request
from mes_contracts.envelope import Outcome
from tests.support.batch_items import MIXED, Names, build, one_by_one, prepare
from tests.support.batch_lots import LANG, STATION, new_lot

pytestmark = pytest.mark.plain_pg  # issue 14: also run on plain PostgreSQL (test.sh's second pass)


@pytest.fixture
async def database(postgres: PostgresServer) -> AsyncIterator[Database]:
    engine = create_async_engine(postgres.url, pool_size=4)
    yield Database(engine, ZoneInfo("Asia/Seoul"))
    await engine.dispose()


def audit_rows(dsn: str, names: Names) -> list[str]:
    """The audit rows the names' messages left, in chain order, with LOTs, ids and hashes as roles."""
    ids = [str(message_id) for message_id in names.ids.values()]
    with psycopg.connect(dsn) as conn:
        found = conn.execute(
            "SELECT actor, action, entity, entity_key, old_value, new_value, reason, request_id FROM audit_log "
            "WHERE request_id = ANY(%s) ORDER BY id",
            (ids,),
        ).fetchall()
    return [names.normalise(list(row)) for row in found]


async def test_mqtt_start_is_audited_with_the_message_id(database: Database, postgres: PostgresServer) -> None:
    lot = await new_lot(database)
    message_id = uuid.uuid4()
    at = datetime.now(KST).replace(microsecond=0)
    answer = await handle_start(database, start_request("PROC-001", lot, "W003", at), STATION, message_id, LANG)
    assert answer.outcome is Outcome.ACCEPTED
    repeat = await handle_start(database, start_request("PROC-001", lot, "W003", at), STATION, message_id, LANG)
    assert repeat.outcome is Outcome.DUPLICATE
    with psycopg.connect(postgres.dsn) as conn:
        found = conn.execute(
            "SELECT actor, action, entity_key, new_value->>'source' FROM audit_log WHERE request_id = %s ORDER BY id",
            (str(message_id),),
        ).fetchall()
    assert found == [
        ("W003@st01", "process.start", f"{lot}/PROC-001", STATION),
        ("W003@st01", "lot.status", lot, None),
    ]  # a redelivery adds nothing


async def test_batch_writes_the_same_audit_rows_as_one_by_one(database: Database, postgres: PostgresServer) -> None:
    base = datetime.now(KST).replace(microsecond=0) - timedelta(hours=3)
    batch_names, serial_names = Names("batch"), Names("serial")
    await prepare(database, batch_names, base)
    await prepare(database, serial_names, base)

    await bc.handle_completions_batch(database, [build(spec, batch_names, base) for spec in MIXED], LANG)
    await one_by_one(database, [build(spec, serial_names, base) for spec in MIXED])

    batched = audit_rows(postgres.dsn, batch_names)
    assert batched == audit_rows(postgres.dsn, serial_names)
    completions = [row for row in batched if '"process.complete"' in row]
    assert len(completions) == 11  # PRE's accepted item and the 10 accepted items of MIXED, each once
    assert any('"lot.status"' in row and '{"status": "COMPLETED"}' in row for row in batched)
    assert all(row.startswith('["W00') and "@st01" in row for row in batched)

    async with database.engine.connect() as conn:
        result = await verify_chain(conn)
    assert result.ok, result.broken
