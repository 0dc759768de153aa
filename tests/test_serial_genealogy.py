"""Serial genealogy (issue 13 point 1): the pure rules (quick) and the stored statuses over REST (plain_pg).

Rules (cloud_api/domain/genealogy.py): a completion naming a serial is unit-level (FAIL → FAILED, PROC-008 PASS →
PASSED, other PASS → IN_PROGRESS); a LOT-level PROC-007 result → IN_PROGRESS, a LOT-level PROC-008 PASS → PASSED
for every open serial; a LOT-level FAIL names no unit and changes nothing; statuses never go back.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from cloud_api.domain.genealogy import SerialStatus, named_serial, rank, serial_effect
from line_simulator.payloads import completion_record
from mes_contracts.route import ROUTE
from tests.support.auth import RoleAuth
from tests.support.line import SEOUL, start_body


@pytest.mark.parametrize(
    ("process_id", "verdict", "serial", "expected"),
    [
        ("PROC-003", "FAIL", None, None),  # one unit left the cart before it had a serial
        ("PROC-003", "PASS", None, None),  # LOT-level history, no status change
        ("PROC-007", "PASS", None, (SerialStatus.IN_PROGRESS, None)),
        ("PROC-007", "FAIL", None, None),
        ("PROC-008", "PASS", None, (SerialStatus.PASSED, None)),
        ("PROC-008", "FAIL", None, None),  # which unit? the station must name it
        ("PROC-008", "PASS", "S-1", (SerialStatus.PASSED, "S-1")),
        ("PROC-008", "FAIL", "S-1", (SerialStatus.FAILED, "S-1")),
        ("PROC-007", "PASS", "S-1", (SerialStatus.IN_PROGRESS, "S-1")),
        ("PROC-006", "FAIL", "S-1", (SerialStatus.FAILED, "S-1")),
    ],
)
def test_serial_effect(process_id: str, verdict: str, serial: str | None, expected: Any) -> None:
    effect = serial_effect(process_id, verdict, serial)
    assert (None if effect is None else (effect.status, effect.serial_number)) == expected


def test_statuses_only_rise_and_failed_is_final() -> None:
    order = [SerialStatus.CREATED, SerialStatus.IN_PROGRESS, SerialStatus.PASSED, SerialStatus.FAILED]
    assert [rank(s) for s in order] == [1, 2, 3, 4]


def test_named_serial_top_level_or_in_process_data() -> None:
    assert named_serial({"serial_number": "A-0001"}, {}) == "A-0001"
    assert named_serial({}, {"serial_number": "A-0002"}) == "A-0002"
    assert named_serial(None, {"inspection_result": "PASS"}) is None
    assert named_serial({"serial_number": ""}, {}) is None


def _run(client: httpx.Client, lot: str, process_id: str, at: datetime, **overrides: Any) -> None:
    record = completion_record(process_id, lot, "W001", at, at + timedelta(minutes=1), random.Random(1), **overrides)
    done = client.post("/api/v1/process/complete", json=record)
    assert done.status_code == 200, done.text


@pytest.mark.plain_pg
def test_lot_level_and_unit_level_results_move_serial_statuses(
    api_url: str, auth: RoleAuth, db: psycopg.Connection
) -> None:
    created = httpx.post(
        f"{api_url}/api/v1/lots", json={"shift": "D", "target_quantity": 3}, auth=auth.manager, timeout=15
    )
    lot = str(created.json()["data"]["lot_number"])
    at = datetime.now(SEOUL).replace(microsecond=0) - timedelta(hours=2)
    with httpx.Client(base_url=api_url, auth=auth.operator, timeout=15) as client:
        serials: list[str] = []
        for step in ROUTE:
            started = client.post("/api/v1/process/start", json=start_body(lot, step.process_id, "W001", at))
            assert started.status_code == 200, started.text
            if step.process_id == "PROC-007":
                serials = started.json()["data"]["serial_numbers"]
                assert _statuses(db, serials) == ["CREATED"] * 3
            if step.process_id == "PROC-008":
                # Unit 2 fails packing inspection; a file naming another LOT's serial links nothing.
                _run(client, lot, "PROC-008", at, fail=True, serial_number=serials[1])
                assert _statuses(db, serials) == ["IN_PROGRESS", "FAILED", "IN_PROGRESS"]
                _run(client, lot, "PROC-008", at, process_data={"serial_number": "WF-KR-000101D-001-0001"})
                assert _statuses(db, serials) == ["IN_PROGRESS", "FAILED", "IN_PROGRESS"]
            _run(client, lot, step.process_id, at)  # LOT-level PASS
            at += timedelta(minutes=5)
    assert _statuses(db, serials) == ["PASSED", "FAILED", "PASSED"]  # the LOT-level PASS never lifts a FAILED unit
    history = db.execute(
        "SELECT s.sequence, h.from_status, h.to_status, h.process_id, h.result_id IS NOT NULL, "
        "h.message_id IS NOT NULL FROM serial_status_history h JOIN serials s ON s.id = h.serial_id "
        "WHERE s.serial_number = ANY(%s) ORDER BY s.sequence, h.id",
        (serials,),
    ).fetchall()
    assert history == [
        (1, "CREATED", "IN_PROGRESS", "PROC-007", True, True),
        (1, "IN_PROGRESS", "PASSED", "PROC-008", True, True),
        (2, "CREATED", "IN_PROGRESS", "PROC-007", True, True),
        (2, "IN_PROGRESS", "FAILED", "PROC-008", True, True),
        (3, "CREATED", "IN_PROGRESS", "PROC-007", True, True),
        (3, "IN_PROGRESS", "PASSED", "PROC-008", True, True),
    ]
    unit_rows = db.execute(
        "SELECT s.serial_number, r.result FROM process_results r LEFT JOIN serials s ON s.id = r.serial_id "
        "JOIN lots l ON l.id = r.lot_id WHERE l.lot_number = %s AND r.process_id = 'PROC-008' ORDER BY r.id",
        (lot,),
    ).fetchall()
    assert unit_rows == [(serials[1], "FAIL"), (None, "PASS"), (None, "PASS")]


def _statuses(db: psycopg.Connection, serials: list[str]) -> list[str]:
    rows = db.execute(
        "SELECT status FROM serials WHERE serial_number = ANY(%s) ORDER BY sequence", (serials,)
    ).fetchall()
    return [r[0] for r in rows]
