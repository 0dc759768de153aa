"""The start rules in mes_start_processes (migration 0015) and in the domain (decide_start) agree on every case.

Table-driven, the same inputs both ways: each case is a LOT (missing or in each status), a worker (active,
disabled, unknown), a process and the LOT's runs of that process and of the previous one (none, STARTED,
COMPLETED). The domain decides on the LotForStart those inputs make; the function, called with the arguments the
ingestor builds (services/start_fast.start_call), decides on the same rows, inside a transaction rolled back after
each case. Where the domain allows the start the function must write it, with the domain's status change (LOT
status, history reason, lot.status audit row); where the domain refuses, the function must answer `fallback` and
write nothing. Requests the ingestor does not send to the function (unknown process, wrong name, PROC-004/-007)
are checked to be refused or handed on by the domain's own step resolution.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from cloud_api.adapters import start_fast as adapter
from cloud_api.adapters.database import Database
from cloud_api.domain.errors import DomainError
from cloud_api.domain.lots import LotStatus
from cloud_api.domain.start import LotForStart, RunRow, decide_start
from cloud_api.services import start_fast as service
from cloud_api.services.handlers import parse_start_request
from deploy.localstack.services import PostgresServer
from line_simulator.clock import KST
from line_simulator.payloads import start_request
from mes_contracts.route import ROUTE, previous_step

pytestmark = pytest.mark.plain_pg

AT = datetime(2026, 3, 9, 10, 0, tzinfo=KST)
ZONE = ZoneInfo("Asia/Seoul")
DB = Database(engine=None, zone=ZONE)  # type: ignore[arg-type]  # start_call needs the zone only
STATION = "KR/L1/st01"
WORKERS = {"active": ("W002", True), "disabled": ("W999", False), "unknown": ("WX404", False)}
RUN_STATES = (None, "STARTED", "COMPLETED")
LOT_STATES = (None, *LotStatus)  # None: no such LOT
PROCESSES = ("PROC-001", "PROC-002", "PROC-005", "PROC-008")


def cases() -> Iterator[tuple[LotStatus | None, str, str, str | None, str | None]]:
    for lot, worker, process, own, before in itertools.product(LOT_STATES, WORKERS, PROCESSES, RUN_STATES, RUN_STATES):
        if process == "PROC-001" and before is not None:
            continue  # the first process has no previous one
        yield lot, worker, process, own, before


def _domain(request: Any, lot: LotForStart | None) -> tuple[LotStatus, LotStatus, str] | str | None:
    """The domain's transition when it allows the start ("no change" as None), or the refusal's code."""
    try:
        return decide_start(request, lot, ZONE, "ko").transition
    except DomainError as error:
        return error.code.value


def _insert_lot(conn: psycopg.Connection[Any], number: str, status: LotStatus) -> int:
    row = conn.execute(
        "INSERT INTO lots (lot_number, product_model_id, target_quantity, shift, production_date, sequence, status, "
        "created_by) SELECT %s, min(id), 10, 'D', %s, 1, %s, 'test' FROM product_models RETURNING id",
        (number, AT.date(), status.value),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _insert_run(conn: psycopg.Connection[Any], lot_id: int, process_id: str, status: str) -> RunRow:
    work_order = f"WO-RULES-{uuid.uuid4().hex[:12]}"
    sequence = int(process_id[-3:])
    conn.execute(
        "INSERT INTO process_runs (lot_id, process_id, work_order_id, sequence_number, status, start_time, "
        "start_worker_id, start_source) VALUES (%s, %s, %s, %s, %s, %s, 'W001', %s)",
        (lot_id, process_id, work_order, sequence, status, AT, STATION),
    )
    return RunRow(process_id, status, work_order, AT)


def _written(conn: psycopg.Connection[Any], lot_id: int, message_id: uuid.UUID) -> dict[str, Any]:
    row = conn.execute(
        "SELECT (SELECT status FROM lots WHERE id = %(lot)s), "
        "(SELECT count(*) FROM process_runs WHERE start_message_id = %(m)s), "
        "(SELECT array_agg(reason) FROM lot_status_history WHERE message_id = %(m)s), "
        "(SELECT array_agg(action ORDER BY id) FROM audit_log WHERE request_id = %(r)s), "
        "(SELECT count(*) FROM processed_messages WHERE message_id = %(m)s)",
        {"lot": lot_id, "m": message_id, "r": str(message_id)},
    ).fetchone()
    assert row is not None
    return dict(zip(("status", "runs", "history", "audit", "answers"), row, strict=True))


@pytest.fixture(scope="module")
def conn(postgres: PostgresServer) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(postgres.dsn) as connection:
        yield connection


@dataclass(frozen=True)
class Case:
    label: str
    call: adapter.StartCall
    lot_status: LotStatus | None
    lot_id: int
    message_id: uuid.UUID
    expected: tuple[LotStatus, LotStatus, str] | str | None  # the domain's transition, or its refusal's code


def _prepare(
    conn: psycopg.Connection[Any], lot_status: LotStatus | None, worker: str, process: str, own: Any, before: Any
) -> Case:
    """The case's rows (in the open transaction), the function's input and the domain's decision."""
    number, message_id = f"WF-KR-RULES-{uuid.uuid4().hex[:8]}", uuid.uuid4()
    worker_id, active = WORKERS[worker]
    built = service.start_call(DB, start_request(process, number, worker_id, AT), STATION, message_id, "ko")
    assert built is not None
    lot_id, runs = 0, []
    if lot_status is not None:
        lot_id = _insert_lot(conn, number, lot_status)
        previous = previous_step(process)
        for process_id, state in ((process, own), (previous.process_id if previous else "", before)):
            if state is not None:
                runs.append(_insert_run(conn, lot_id, process_id, state))
    lot = None if lot_status is None else LotForStart(lot_id, lot_status, active, tuple(runs))
    expected = _domain(parse_start_request(start_request(process, number, worker_id, AT)), lot)
    label = f"{lot_status} {worker} {process} own={own} previous={before}: domain {expected}"
    return Case(label, built[0], lot_status, lot_id, message_id, expected)


def _check(conn: psycopg.Connection[Any], case: Case, result: adapter.StartResult) -> str:
    label = f"{case.label}, sql {result}"
    if isinstance(case.expected, str):  # refused by the domain: the function hands it on, writes nothing
        assert result.outcome == "fallback" and result.fallback_reason, label
        if case.lot_status is not None:
            assert _written(conn, case.lot_id, case.message_id) == {
                "status": case.lot_status.value,
                "runs": 0,
                "history": None,
                "audit": None,
                "answers": 0,
            }, label
        return case.expected
    assert result.outcome == "accepted" and result.work_order_id, label  # allowed: written, with the domain's change
    assert case.lot_status is not None
    written = _written(conn, case.lot_id, case.message_id)
    if case.expected is None:
        assert written["status"] == case.lot_status.value and written["history"] is None, label
        assert written["audit"] == ["process.start"], label
    else:
        assert (case.lot_status, LotStatus(written["status"])) == case.expected[:2], label
        assert written["history"] == [case.expected[2]], label
        assert written["audit"] == ["process.start", "lot.status"], label
    assert written["runs"] == 1 and written["answers"] == 1, label
    return "allowed"


def _call(conn: psycopg.Connection[Any], calls: list[adapter.StartCall]) -> list[adapter.StartResult]:
    for n, call in enumerate(calls):
        call["n"] = n
    rows = conn.execute(adapter._START_SQL, (json.dumps(calls),)).fetchall()
    return [adapter.StartResult(*row) for row in rows]


def test_every_rule_case_is_decided_alike_by_the_function_and_the_domain(conn: psycopg.Connection[Any]) -> None:
    checked: dict[str, int] = {}
    for lot_status, worker, process, own, before in cases():
        try:
            case = _prepare(conn, lot_status, worker, process, own, before)
            [result] = _call(conn, [case.call])
            key = _check(conn, case, result)
            checked[key] = checked.get(key, 0) + 1
        finally:
            conn.rollback()
    # Every rule was met at least once, and allowed starts with and without a status change.
    assert set(checked) == {
        "allowed",
        "LOT_NOT_FOUND",
        "WORKER_NOT_FOUND",
        "INVALID_PROCESS_SEQUENCE",
        "DUPLICATE_START",
        "PREVIOUS_PROCESS_NOT_COMPLETED",
    }, checked


def test_every_rule_case_in_one_call_is_decided_as_alone(conn: psycopg.Connection[Any]) -> None:
    """Many starts in one call (services/start_queue.py): each decided and written as if it were alone."""
    try:
        prepared = [_prepare(conn, *case) for case in cases()]
        results = _call(conn, [case.call for case in prepared])
        assert [result.n for result in results] == list(range(len(prepared)))
        outcomes = {_check(conn, case, result) for case, result in zip(prepared, results, strict=True)}
        assert "allowed" in outcomes and len(outcomes) == 6
    finally:
        conn.rollback()


@pytest.mark.parametrize(
    ("process_id", "process_name"),
    [
        ("PROC-099", "없는 공정"),
        ("PROC-002", "센서 검사"),  # another process's name
        ("PROC-004", ROUTE[3].name_ko),
        ("PROC-007", ROUTE[6].name_ko),
    ],
)
def test_requests_outside_the_function_are_the_domains_to_refuse_or_the_locked_paths(
    process_id: str, process_name: str
) -> None:
    body = start_request("PROC-001", "WF-KR-260309D-001", "W002", AT) | {
        "process_id": process_id,
        "process_name": process_name,
    }
    assert service.start_call(DB, body, STATION, uuid.uuid4(), "ko") is None
    lot = LotForStart(1, LotStatus.IN_PROGRESS, True, ())
    outcome = _domain(parse_start_request(body), lot)
    if process_id in service.NOT_IN_ONE_ROUND_TRIP:  # allowed or not, PROC-004/-007 are the locked path's
        assert outcome == "PREVIOUS_PROCESS_NOT_COMPLETED"
    else:
        assert outcome in ("INVALID_PROCESS_SEQUENCE", "INVALID_REQUEST")
