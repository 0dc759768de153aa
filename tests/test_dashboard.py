"""GET /api/v1/dashboard/today (TC-DASH-001/002): counts recomputed independently from the tables' rows."""

from __future__ import annotations

import math
import random
import time
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from line_simulator.payloads import completion_record
from mes_contracts.route import ROUTE
from tests.support.auth import RoleAuth
from tests.support.line import SEOUL, Line

pytestmark = pytest.mark.plain_pg


def _complete(line: Line, lot: str, process_id: str, fail: bool = False, start: bool = True) -> None:
    if start:
        assert line.start_via_gateway(lot, process_id).status_code == 200
    end = datetime.now(SEOUL).replace(microsecond=0)
    record = completion_record(process_id, lot, "W001", end - timedelta(minutes=2), end, random.Random(3), fail=fail)
    name = line.drop_record(record, stamp=datetime.now(SEOUL) + timedelta(seconds=random.randint(1, 10**6)))
    assert line.wait_disposition(process_id, name) == "completed"


def _expected(db: psycopg.Connection, start: datetime, end: datetime) -> dict[str, dict[str, Any]]:
    """The board's numbers from raw rows, counted in Python (not with the API's SQL)."""
    runs = db.execute("SELECT process_id, status, start_time, complete_time FROM process_runs").fetchall()
    results = db.execute(
        "SELECT id, lot_id, serial_id, process_id, result, complete_time FROM process_results ORDER BY id"
    ).fetchall()
    counts: dict[str, dict[str, Any]] = {s.process_id: defaultdict(int) for s in ROUTE}
    for process_id, status, started, completed in runs:
        c = counts[process_id]
        c["started"] += start <= started < end
        c["completed"] += completed is not None and start <= completed < end
        c["in_progress"] += status == "STARTED" and started < end
    seen: set[tuple[Any, ...]] = set()
    for _id, lot_id, serial_id, process_id, result, completed in results:
        key = (lot_id, serial_id, process_id)
        first = key not in seen
        seen.add(key)
        if start <= completed < end:
            c = counts[process_id]
            c["passed" if result == "PASS" else "failed"] += 1
            c["first_results"] += first
            c["first_passed"] += first and result == "PASS"
    return {p: dict(c) for p, c in counts.items()}


def _board(api_url: str, auth: RoleAuth, **params: str) -> dict[str, Any]:
    response = httpx.get(f"{api_url}/api/v1/dashboard/today", params=params, auth=auth.viewer, timeout=15)
    assert response.status_code == 200, response.text
    return dict(response.json()["data"])


def _compare(board: dict[str, Any], expected: dict[str, dict[str, Any]]) -> None:
    keys = ("started", "completed", "passed", "failed", "in_progress", "first_results", "first_passed")
    for process in board["processes"]:
        want = expected[process["process_id"]]
        assert {k: process[k] for k in keys} == {k: want.get(k, 0) for k in keys}, process["process_id"]
        total = want.get("first_results", 0)
        fpy = round(want.get("first_passed", 0) / total, 4) if total else None
        assert process["first_pass_yield"] == fpy
    known = [p["first_pass_yield"] for p in board["processes"] if p["first_pass_yield"] is not None]
    assert board["first_pass_yield"] == (round(math.prod(known), 4) if known else None)
    assert board["totals"]["failed"] == sum(w.get("failed", 0) for w in expected.values())


def _settled_board(api_url: str, auth: RoleAuth, db: psycopg.Connection, **params: str) -> dict[str, Any]:
    """The board compared with the tables read just before and after it (retried if the line moved between)."""
    for _ in range(5):
        board = _board(api_url, auth, **params)
        start, end = datetime.fromisoformat(board["window"]["from"]), datetime.fromisoformat(board["window"]["to"])
        before = _expected(db, start, end)
        again = _board(api_url, auth, **params)
        if again["processes"] == board["processes"] and _expected(db, start, end) == before:
            _compare(again, before)
            return again
    raise AssertionError("the line never stood still long enough to compare")


def test_today_counts_match_the_tables(line: Line, api_url: str, auth: RoleAuth, db: psycopg.Connection) -> None:
    before = _board(api_url, auth)
    # The shift running now: a day-shift LOT created between midnight and 08:00 belongs to the coming production
    # day, not to the board's (still the previous) one.
    hour = datetime.now(SEOUL).hour
    lot = line.create_lot(shift="D" if 8 <= hour < 20 else "N", quantity=20)
    _complete(line, lot, "PROC-001")
    _complete(line, lot, "PROC-002")
    _complete(line, lot, "PROC-003", fail=True)  # a FAIL completes the process; the retest passes
    _complete(line, lot, "PROC-003", start=False)
    assert line.start_via_gateway(lot, "PROC-004").status_code == 200

    board = _settled_board(api_url, auth, db)
    by_id = {p["process_id"]: p for p in board["processes"]}
    old = {p["process_id"]: p for p in before["processes"]}
    assert by_id["PROC-003"]["failed"] - old["PROC-003"]["failed"] == 1
    assert by_id["PROC-003"]["passed"] - old["PROC-003"]["passed"] == 1
    assert by_id["PROC-003"]["first_results"] - old["PROC-003"]["first_results"] == 1  # the retest is no first
    assert by_id["PROC-004"]["in_progress"] - old["PROC-004"]["in_progress"] == 1
    assert board["totals"]["lots_created"] - before["totals"]["lots_created"] == 1
    ours = next(x for x in board["lots_in_progress"] if x["lot_number"] == lot)
    assert ours["current_process"] == "PROC-004" and ours["current_state"] == "STARTED"
    assert ours["current_process_name"] == "펌웨어 업로드"
    assert (ours["completed_processes"], ours["total_processes"], ours["percent"]) == (3, 8, 38)
    assert ours["failed_results"] == 1 and ours["status"] == "IN_PROGRESS"
    assert board["units"]["per_hour"] == pytest.approx(board["units"]["completed"] / board["units"]["hours"], 0.01)


def test_a_shift_is_half_the_production_day(api_url: str, auth: RoleAuth, db: psycopg.Connection) -> None:
    day = _board(api_url, auth)
    for shift, hours in (("D", (8, 20)), ("N", (20, 8))):
        board = _settled_board(api_url, auth, db, shift=shift)
        start, end = datetime.fromisoformat(board["window"]["from"]), datetime.fromisoformat(board["window"]["to"])
        assert (start.hour, end.hour) == hours and end - start == timedelta(hours=12)
        assert board["shift"] == shift and board["production_date"] == day["production_date"]
        assert all(x["shift"] == shift for x in board["lots_in_progress"])
    english = httpx.get(
        f"{api_url}/api/v1/dashboard/today", headers={**auth.viewer.headers(), "Accept-Language": "en"}, timeout=15
    )
    assert english.json()["data"]["processes"][0]["process_name"] == "Laser marking"
    assert _board(api_url, auth, lang="en")["processes"][1]["process_name"] == "LMA assembly"


def test_a_past_day_and_bad_parameters(api_url: str, auth: RoleAuth) -> None:
    old = _board(api_url, auth, date="2020-01-02")
    assert old["production_date"] == "2020-01-02" and old["totals"]["completed"] == 0
    assert old["first_pass_yield"] is None and old["window"]["from"].startswith("2020-01-02T08:00:00")
    url = f"{api_url}/api/v1/dashboard/today"
    for params in ({"shift": "X"}, {"lot": "1"}, {"date": "yesterday"}):
        refused = httpx.get(url, params=params, auth=auth.viewer, timeout=15)
        assert refused.status_code == 422 and refused.json()["error_code"] == "INVALID_REQUEST", params
    assert httpx.get(url, timeout=15).status_code == 401


def test_the_board_is_fast_enough(api_url: str, auth: RoleAuth) -> None:
    # TC-DASH-004 asks a first load under 3 s; the answer itself must be a small part of it.
    with httpx.Client(auth=auth.viewer, timeout=15) as client:
        client.get(f"{api_url}/api/v1/dashboard/today")
        started = time.perf_counter()
        assert client.get(f"{api_url}/api/v1/dashboard/today").status_code == 200
        assert time.perf_counter() - started < 1.0
