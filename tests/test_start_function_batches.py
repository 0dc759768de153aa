"""The MQTT start in one round trip (migration 0015): starts arriving together share one call, each as if alone;
a call that fails is sent again start by start."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from cloud_api.adapters import start_fast as adapter
from cloud_api.adapters.database import Database
from cloud_api.services import start_queue
from deploy.localstack.services import PostgresServer
from line_simulator.payloads import start_request
from mes_contracts.envelope import Outcome
from tests.support.batch_lots import new_lot
from tests.support.start_function import _sql, _start, conns, locked_calls
from tests.test_start_one_statement import AT, database, one

pytestmark = pytest.mark.plain_pg
__all__ = ["conns", "database", "locked_calls"]  # the fixtures, reused


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
