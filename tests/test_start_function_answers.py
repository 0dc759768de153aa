"""The MQTT start in one round trip (issue 18.3, migration 0015's mes_start_processes): the same answer, rows and
audit trail as the locked path; a redelivery answered from the stored reply; racing starts of one LOT and process
with one winner."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from cloud_api.adapters.database import Database
from cloud_api.audit.trail import rows_json
from cloud_api.domain.lots import LotStatus
from cloud_api.services import handlers
from cloud_api.services import start_fast as service
from cloud_api.services.handlers import Answer, parse_start_request
from cloud_api.services.process_start import StartOrigin, _audit_entries, _data
from deploy.localstack.services import PostgresServer
from line_simulator.payloads import start_request
from mes_contracts.envelope import Outcome
from mes_contracts.errors import success_message
from mes_contracts.route import get_step
from mes_contracts.start import success_body
from tests.support.batch_lots import LANG, STATION, lot_at, new_lot
from tests.support.start_function import _complete, _start, conns, locked_calls
from tests.test_start_one_statement import AT, database, one

pytestmark = pytest.mark.plain_pg
__all__ = ["conns", "database", "locked_calls"]  # the fixtures, reused

AUDIT_COLUMNS = "actor, action, entity, entity_key, old_value, new_value, reason, request_id"


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
