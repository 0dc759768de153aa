"""The MQTT start in one round trip (issue 18.3, migration 0015's mes_start_processes): the same answer, rows and
audit trail as the locked path; a redelivery answered from the stored reply; racing starts of one LOT and process
with one winner; every case the function does not settle reaching the locked path; the migration's round trip."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cloud_api.adapters import start_fast as adapter
from cloud_api.adapters.database import Database
from cloud_api.audit.trail import rows_json
from cloud_api.domain.lots import LotStatus
from cloud_api.services import handlers, start_queue
from cloud_api.services import start_fast as service
from cloud_api.services.handlers import Answer, parse_start_request
from cloud_api.services.process_start import StartOrigin, _audit_entries, _data
from db.migrate import downgrade, upgrade
from deploy.localstack.services import PostgresServer
from line_simulator.payloads import start_request
from mes_contracts.envelope import Outcome
from mes_contracts.errors import success_message
from mes_contracts.route import get_step
from mes_contracts.start import success_body
from tests.test_batch_completion import LANG, STATION, lot_at, new_lot
from tests.test_start_one_statement import AT, database, one

pytestmark = pytest.mark.plain_pg
__all__ = ["database"]  # the fixture, reused

AUDIT_COLUMNS = "actor, action, entity, entity_key, old_value, new_value, reason, request_id"


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


@pytest.mark.parametrize(
    "at",
    [
        AT,
        AT.astimezone(UTC),
        AT.replace(microsecond=120000),
        AT.astimezone(UTC).replace(microsecond=5),
        datetime(2026, 3, 2, 10, 0, tzinfo=UTC) + timedelta(hours=-3, minutes=30),
    ],
)
@pytest.mark.parametrize("lang", ["ko", "en", "fr"])
def test_the_answer_body_and_audit_rows_are_the_locked_paths(at: datetime, lang: str) -> None:
    request = parse_start_request(start_request("PROC-002", "WF-KR-260302D-001", "W002", at))
    step, message_id = get_step("PROC-002"), uuid.uuid4()
    mine = service.answer_body(request, step.process_id, step.sequence, lang)
    theirs = success_body(success_message("process_started", lang), _data(request, step, "", None, None))
    assert json.dumps(mine, ensure_ascii=False) == json.dumps(theirs.to_json_dict(), ensure_ascii=False)

    origin = StartOrigin(STATION, message_id, lang)
    transition = (LotStatus(service.CHANGE_FROM), LotStatus(service.CHANGE_TO), "PROC-002 start")
    entries = _audit_entries(request, step.process_id, "", origin, transition)
    audit, change = service.audit_rows(request, step.process_id, STATION, message_id, request.start_time.isoformat())
    assert json.loads(json.dumps(audit)) == json.loads(rows_json(entries[:1]))
    expected_change = json.loads(rows_json(entries[1:]))
    expected_change[0]["n"] = 1  # chained after the start's row
    assert json.loads(json.dumps(change)) == expected_change


async def test_a_common_start_is_one_statement_with_the_locked_paths_answer_rows_and_audit(
    database: Database, conns: Any, postgres: PostgresServer, locked_calls: list[Any]
) -> None:
    fast_lot, locked_lot = await new_lot(database), await new_lot(database)
    fast_id, locked_id = uuid.uuid4(), uuid.uuid4()
    fast = await _start(database, conns, start_request("PROC-001", fast_lot, "W002", AT), fast_id)
    locked = await handlers.handle_start(
        database, start_request("PROC-001", locked_lot, "W002", AT), STATION, locked_id, LANG, one_statement=False
    )
    assert locked_calls == []
    assert fast.outcome is Outcome.ACCEPTED and fast.http_status == 200

    def same_shape(answer: Answer, lot: str) -> str:  # the reply's bytes, but the LOT and its work order
        data = answer.body["data"]
        text = json.dumps(answer.body, ensure_ascii=False, separators=(",", ":"))
        return text.replace(lot, "<lot>").replace(data["work_order_id"], "<wo>")

    assert same_shape(fast, fast_lot) == same_shape(locked, locked_lot)
    dsn = postgres.dsn
    for lot, message_id, answer in ((fast_lot, fast_id, fast), (locked_lot, locked_id, locked)):
        assert one(dsn, "SELECT response FROM processed_messages WHERE message_id = %s", message_id) == answer.body
        assert one(dsn, "SELECT status FROM lots WHERE lot_number = %s", lot) == "IN_PROGRESS"

    def trail(message_id: uuid.UUID, lot: str, answer: Answer) -> str:
        rows = _rows(dsn, f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE request_id = %s ORDER BY id", str(message_id))
        rows += _rows(
            dsn,
            "SELECT h.from_status, h.to_status, h.actor, h.reason, r.status, r.start_worker_id, r.start_source, "
            "r.sequence_number, r.start_time, r.start_message_id = %s FROM lot_status_history h "
            "JOIN process_runs r ON r.lot_id = h.lot_id WHERE h.message_id = %s",
            message_id,
            message_id,
        )
        text = json.dumps(rows, default=str, ensure_ascii=False)
        return (
            text.replace(str(message_id), "<id>")
            .replace(lot, "<lot>")
            .replace(answer.body["data"]["work_order_id"], "<wo>")
        )

    assert trail(fast_id, fast_lot, fast) == trail(locked_id, locked_lot, locked)
    assert '"lot.status"' in trail(fast_id, fast_lot, fast)


def _rows(dsn: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, args).fetchall()


async def test_a_redelivery_is_answered_from_the_stored_reply_in_the_same_round_trip(
    database: Database, conns: Any, postgres: PostgresServer, locked_calls: list[Any]
) -> None:
    lot, message_id = await lot_at(database, "PROC-001", AT), uuid.uuid4()
    _complete(postgres.dsn, lot, "PROC-001")
    body = start_request("PROC-002", lot, "W003", AT)
    first = await _start(database, conns, body, message_id)
    again = await _start(database, conns, body, message_id)
    assert first.outcome is Outcome.ACCEPTED and first.body["data"]["sequence_number"] == 2
    assert again.outcome is Outcome.DUPLICATE and again.http_status == 200 and again.body == first.body
    assert locked_calls == []  # both answered by the function
    runs = "SELECT count(*) FROM process_runs r JOIN lots l ON l.id = r.lot_id WHERE l.lot_number = %s"
    assert one(postgres.dsn, runs, lot) == 2  # PROC-001 and PROC-002, once


def _complete(dsn: str, lot: str, process_id: str) -> None:
    """Mark the LOT's run of a process COMPLETED (the completion path is tested elsewhere)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE process_runs SET status = 'COMPLETED' FROM lots l WHERE l.id = process_runs.lot_id "
            "AND l.lot_number = %s AND process_runs.process_id = %s",
            (lot, process_id),
        )


async def test_racing_starts_of_one_lot_and_process_have_one_winner(
    database: Database, conns: Any, postgres: PostgresServer, locked_calls: list[Any]
) -> None:
    lot = await new_lot(database)
    ids = [uuid.uuid4() for _ in range(4)]
    answers = await asyncio.gather(
        *(_start(database, conns, start_request("PROC-001", lot, "W002", AT), message_id) for message_id in ids)
    )
    outcomes = sorted((a.outcome.value, a.body.get("error_code")) for a in answers)
    assert outcomes == [("accepted", None)] + [("rejected", "DUPLICATE_START")] * 3, outcomes
    winner = next(i for i, a in zip(ids, answers, strict=True) if a.outcome is Outcome.ACCEPTED)
    assert winner not in locked_calls and len(locked_calls) == 3  # the losers' refusals come from the locked path
    runs = "SELECT count(*) FROM process_runs r JOIN lots l ON l.id = r.lot_id WHERE l.lot_number = %s"
    assert one(postgres.dsn, runs, lot) == 1
    assert (
        one(
            postgres.dsn,
            "SELECT count(*) FROM lot_status_history h JOIN lots l ON l.id = h.lot_id "
            "WHERE l.lot_number = %s AND h.to_status = 'IN_PROGRESS'",
            lot,
        )
        == 1
    )


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


def _sql(dsn: str, query: str, *args: Any) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(query, args)


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


@pytest.fixture
def batch_sizes(conns: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One call at a time for these connections (the rest queue up), and the number of starts of each call."""
    sizes: list[int] = []
    real = adapter.start_processes

    async def spy(conn: Any, starts: str) -> Any:
        sizes.append(len(json.loads(starts)))
        return await real(conn, starts)

    monkeypatch.setattr(adapter, "start_processes", spy)
    monkeypatch.setitem(start_queue._QUEUES, conns, start_queue.StartQueue(conns, in_flight=1))
    return sizes


async def test_starts_arriving_together_are_written_by_one_call_each_as_if_alone(
    database: Database, conns: Any, postgres: PostgresServer, locked_calls: list[Any], batch_sizes: list[int]
) -> None:
    lots = [await new_lot(database) for _ in range(6)]
    ids = [uuid.uuid4() for _ in lots]
    again, rival = ids[0], uuid.uuid4()  # the first start's message again, and another start of its LOT's process
    sends = [(lot, message_id) for lot, message_id in zip(lots, ids, strict=True)] + [
        (lots[0], again),
        (lots[0], rival),
    ]
    await _warm(database, conns)
    answers = await asyncio.gather(
        *(_start(database, conns, start_request("PROC-001", lot, "W002", AT), message_id) for lot, message_id in sends)
    )
    assert batch_sizes == [1, 1, 7]  # the warm-up; the first start at once; the others that queued meanwhile
    assert [a.outcome for a in answers[:6]] == [Outcome.ACCEPTED] * 6
    assert len({a.body["data"]["work_order_id"] for a in answers[:6]}) == 6
    assert answers[6].outcome is Outcome.DUPLICATE and answers[6].body == answers[0].body  # answered in the call
    assert answers[7].outcome is Outcome.REJECTED and answers[7].body["error_code"] == "DUPLICATE_START"
    assert locked_calls == [rival]
    for lot, message_id, answer in zip(lots, ids, answers, strict=False):
        stored = one(postgres.dsn, "SELECT response FROM processed_messages WHERE message_id = %s", message_id)
        assert stored == answer.body and one(postgres.dsn, "SELECT status FROM lots WHERE lot_number = %s", lot) == (
            "IN_PROGRESS"
        )
        audit = "SELECT count(*) FROM audit_log WHERE request_id = %s"
        assert one(postgres.dsn, audit, str(message_id)) == 2


async def test_a_call_that_fails_is_sent_again_start_by_start_and_only_the_culprit_falls_back(
    database: Database, conns: Any, postgres: PostgresServer, locked_calls: list[Any], batch_sizes: list[int]
) -> None:
    lots = [await new_lot(database) for _ in range(4)]
    ids = [uuid.uuid4() for _ in lots]
    # A run that took the last start's message id without an answer (never made by the MES itself): that start's
    # run insert breaks a unique key, and with it the whole call.
    other = await new_lot(database)
    _sql(
        postgres.dsn,
        "INSERT INTO process_runs (lot_id, process_id, work_order_id, sequence_number, status, start_time, "
        "start_worker_id, start_message_id, start_source) SELECT id, 'PROC-001', 'WO-POISON-1', 1, 'STARTED', "
        "now(), 'W002', %s, 'test' FROM lots WHERE lot_number = %s",
        ids[-1],
        other,
    )
    await _warm(database, conns)
    answers = await asyncio.gather(
        *(
            _start(database, conns, start_request("PROC-001", lot, "W002", AT), message_id)
            for lot, message_id in zip(lots, ids, strict=True)
        ),
        return_exceptions=True,
    )
    assert batch_sizes == [1, 1, 3, 1, 1, 1]  # warm-up, first, the failing call, then one by one
    assert [getattr(a, "outcome", None) for a in answers[:3]] == [Outcome.ACCEPTED] * 3
    assert locked_calls == [ids[-1]]  # the locked path decides the culprit (here: its unique key fails again)
    assert isinstance(answers[-1], Exception)
    runs = "SELECT count(*) FROM process_runs WHERE start_message_id = %s"
    assert [one(postgres.dsn, runs, message_id) for message_id in ids] == [1, 1, 1, 1]


async def _warm(db: Database, conns: Any) -> None:
    """One start first: the station table is then cached, and the next starts reach the queue in one go."""
    answer = await _start(db, conns, start_request("PROC-001", await new_lot(db), "W002", AT))
    assert answer.outcome is Outcome.ACCEPTED
