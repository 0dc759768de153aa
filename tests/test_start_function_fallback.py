"""The MQTT start in one round trip (migration 0015): every case the function does not settle reaching the locked
path; the migration's round trip; a database without the function."""

from __future__ import annotations

import importlib.util
import json
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cloud_api.adapters import start_fast as adapter
from cloud_api.adapters.database import Database
from cloud_api.services import start_fast as service
from db.migrate import downgrade, upgrade
from deploy.localstack.services import PostgresServer
from line_simulator.payloads import start_request
from mes_contracts.envelope import Outcome
from mes_contracts.route import get_step
from tests.support.batch_lots import LANG, STATION, lot_at, new_lot
from tests.support.start_function import _complete, _sql, _start, conns, locked_calls
from tests.test_start_one_statement import AT, database, one

pytestmark = pytest.mark.plain_pg
__all__ = ["conns", "database", "locked_calls"]  # the fixtures, reused


async def _fallback_reason(db: Database, conns: Any, body: dict[str, Any], message_id: uuid.UUID) -> str | None:
    """What the function itself answers (None: not even asked, the request is not a common start)."""
    built = service.start_call(db, body, STATION, message_id, LANG)
    if built is None:
        return None
    async with conns.connection() as conn:
        [result] = await adapter.start_processes(conn, json.dumps([built[0]]))
    assert result.outcome == "fallback", result
    return result.fallback_reason


@pytest.mark.parametrize(
    ("case", "reason", "code"),
    [
        ("missing LOT", "lot_not_found", "LOT_NOT_FOUND"),
        ("closed LOT", "lot_status", "INVALID_PROCESS_SEQUENCE"),
        ("disabled worker", "worker", "WORKER_NOT_FOUND"),
        ("started again", "duplicate_start", "DUPLICATE_START"),
        ("previous not completed", "previous_not_completed", "PREVIOUS_PROCESS_NOT_COMPLETED"),
        ("wrong process name", None, "INVALID_REQUEST"),
        ("stored refusal", "answered", "LOT_NOT_FOUND"),
        ("firmware PROC-004", None, None),
        ("serials PROC-007", None, None),
    ],
)
async def test_what_the_function_does_not_settle_reaches_the_locked_path(
    database: Database,
    conns: Any,
    postgres: PostgresServer,
    locked_calls: list[Any],
    case: str,
    reason: str | None,
    code: str | None,
) -> None:
    lot, message_id, worker, process = await new_lot(database), uuid.uuid4(), "W002", "PROC-001"
    body = start_request(process, lot, worker, AT)
    if case == "missing LOT":
        body["lot_number"] = "WF-KR-260302D-998"
    elif case == "closed LOT":
        _sql(postgres.dsn, "UPDATE lots SET status = 'CLOSED' WHERE lot_number = %s", lot)
    elif case == "disabled worker":
        body["worker_id"] = "W999"
    elif case == "started again":
        assert (await _start(database, conns, body)).outcome is Outcome.ACCEPTED
    elif case == "previous not completed":
        body = start_request("PROC-002", lot, worker, AT)
    elif case == "wrong process name":
        body["process_name"] = "센서 검사"
    elif case == "stored refusal":  # a redelivery of a refused start: the locked path gives the same refusal
        body["lot_number"] = "WF-KR-260302D-997"
        assert (await _start(database, conns, body, message_id)).body["error_code"] == "LOT_NOT_FOUND"
        locked_calls.clear()
    else:
        process = case.split()[-1]
        body = start_request(process, await _lot_before(database, postgres.dsn, process), worker, AT)

    assert await _fallback_reason(database, conns, body, message_id) == reason
    answer = await _start(database, conns, body, message_id)
    assert locked_calls == [message_id], case
    assert answer.body.get("error_code") == code, answer
    if code is None:
        assert answer.outcome is Outcome.ACCEPTED and answer.body["data"]["process_id"] == process


async def _lot_before(db: Database, dsn: str, process_id: str) -> str:
    """A LOT whose processes before `process_id` are completed, `process_id` not started."""
    previous = get_step(process_id).sequence - 1
    lot = await lot_at(db, f"PROC-{previous:03d}", AT)
    _complete(dsn, lot, f"PROC-{previous:03d}")
    return lot


SIGNATURE = "mes_start_processes(jsonb, text, text[], text, text)"
EXISTS = "SELECT to_regprocedure(%s) IS NOT NULL"


def _migration() -> Any:
    path = Path(__file__).resolve().parent.parent / "db/migrations/versions/0015_start_function.py"
    spec = importlib.util.spec_from_file_location("migration_0015", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_migration_round_trip(postgres: PostgresServer) -> None:
    """0015 up, down and up again on a database of its own (later migrations may sit on top of the suite's)."""
    name = f"mes_start_fn_{uuid.uuid4().hex[:8]}"
    owner = postgres.owner or postgres.user
    with psycopg.connect(postgres.superuser_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
    owner_dsn = f"{postgres.owner_dsn.rsplit('/', 1)[0]}/{name}"
    owner_url = owner_dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        upgrade(owner_url, "0015", app_role=postgres.user)
        assert one(owner_dsn, EXISTS, SIGNATURE) is True
        downgrade(owner_url, "0014", app_role=postgres.user)
        assert one(owner_dsn, EXISTS, SIGNATURE) is False
        upgrade(owner_url, "0015", app_role=postgres.user)
        assert one(owner_dsn, EXISTS, SIGNATURE) is True
    finally:
        with psycopg.connect(postgres.superuser_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


async def test_a_database_without_the_function_answers_by_the_locked_path(
    database: Database,
    conns: Any,
    postgres: PostgresServer,
    locked_calls: list[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An ingestor upgraded before `mes db upgrade` (or a downgraded database): starts still answered."""
    warm = await _start(database, conns, start_request("PROC-001", await new_lot(database), "W002", AT))
    assert warm.outcome is Outcome.ACCEPTED  # the pooled connection has the statement prepared
    monkeypatch.setattr(service, "_missing_until", 0.0)
    try:
        _sql(postgres.owner_dsn, f"DROP FUNCTION {SIGNATURE}")
        message_id = uuid.uuid4()
        body = start_request("PROC-001", await new_lot(database), "W002", AT)
        answer = await _start(database, conns, body, message_id)
        assert answer.outcome is Outcome.ACCEPTED and locked_calls == [message_id]  # the locked path answered
        assert service._missing_until > 0  # and answers the next ones without asking the database again
        second = uuid.uuid4()
        await _start(database, conns, start_request("PROC-001", await new_lot(database), "W002", AT), second)
        assert locked_calls == [message_id, second]
    finally:
        if not one(postgres.dsn, EXISTS, SIGNATURE):
            _sql(postgres.owner_dsn, _migration().FUNCTION)
    monkeypatch.setattr(service, "_missing_until", 0.0)
    locked_calls.clear()
    again = await _start(database, conns, start_request("PROC-001", await new_lot(database), "W002", AT))
    assert again.outcome is Outcome.ACCEPTED and locked_calls == []
