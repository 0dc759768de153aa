"""Acceptance over the real line: gateway → Mosquitto → ingestor → PostgreSQL (TC-LOT-005, TC-PROC-001…008)."""

from __future__ import annotations

import json
import random
import time
from datetime import datetime, timedelta

import psycopg
import pytest

from line_simulator.payloads import completion_record
from mes_contracts.route import ROUTE
from tests.support.line import SEOUL, Line


def _times() -> tuple[datetime, datetime]:
    end = datetime.now(SEOUL).replace(microsecond=0)
    return end - timedelta(minutes=3), end


def _run_process(line: Line, lot: str, process_id: str, worker: str, rng: random.Random) -> tuple[str, dict]:
    started = line.start_via_gateway(lot, process_id, worker)
    assert started.status_code == 200, started.text
    start, end = _times()
    record = completion_record(process_id, lot, worker, start, end, rng)
    name = line.drop_record(record)
    assert line.wait_disposition(process_id, name) == "completed"
    return name, record


def test_tc_lot_005_one_lot_through_all_eight_processes(line: Line, db: psycopg.Connection) -> None:
    rng = random.Random(5)
    lot = line.create_lot()
    assert line.lot(lot)["status"] == "CREATED"
    records = {}
    for index, step in enumerate(ROUTE):
        worker = f"W{step.sequence:03d}"
        sent_at = datetime.now(SEOUL)
        _, records[step.process_id] = _run_process(line, lot, step.process_id, worker, rng)
        if index == 0:
            assert line.lot(lot)["status"] == "IN_PROGRESS"
        # TC-PROC-008: the server recorded the start within a second of the request.
        recorded = db.execute(
            "SELECT r.started_recorded_at FROM process_runs r JOIN lots l ON l.id = r.lot_id "
            "WHERE l.lot_number = %s AND r.process_id = %s",
            (lot, step.process_id),
        ).fetchone()
        assert recorded is not None and abs((recorded[0] - sent_at).total_seconds()) < 1.0
    detail = line.lot(lot)
    assert detail["status"] == "COMPLETED"
    assert detail["progress"] == {"completed_processes": 8, "total_processes": 8, "percent": 100}
    assert [h["to_status"] for h in detail["status_history"]] == ["CREATED", "IN_PROGRESS", "COMPLETED"]
    rows = db.execute(
        "SELECT r.process_id, r.status, r.start_worker_id, r.complete_worker_id, r.start_time, r.complete_time "
        "FROM process_runs r JOIN lots l ON l.id = r.lot_id WHERE l.lot_number = %s ORDER BY r.sequence_number",
        (lot,),
    ).fetchall()
    assert [r[0] for r in rows] == [s.process_id for s in ROUTE]
    for process_id, status, start_worker, complete_worker, start_time, complete_time in rows:
        record = records[process_id]
        assert status == "COMPLETED"
        expected_worker = record["worker_id"]
        assert start_worker == complete_worker == expected_worker  # TC-PROC-007
        assert complete_time == datetime.fromisoformat(record["complete_time"])  # TC-PROC-008: exact
        assert start_time <= complete_time
    components = {(c["component_kind"], c["component_lot"]) for c in detail["component_lots"]}
    assert components == {
        ("sma_spring", records["PROC-002"]["process_data"]["sma_spring_lot"]),
        ("busbar", records["PROC-002"]["process_data"]["busbar_lot"]),
    }
    measured = db.execute(
        "SELECT count(*) FILTER (WHERE process_id = 'PROC-003'), count(*) FILTER (WHERE process_id = 'PROC-006') "
        "FROM measurements m JOIN lots l ON l.id = m.lot_id WHERE l.lot_number = %s",
        (lot,),
    ).fetchone()
    assert measured is not None and measured[0] == 2 and measured[1] >= 3


def test_tc_proc_001_002_start_over_the_gateway(line: Line) -> None:
    lot = line.create_lot()
    ok = line.start_via_gateway(lot, "PROC-001")
    assert ok.status_code == 200 and ok.json()["message"] == "착공이 등록되었습니다"
    assert ok.json()["data"]["sequence_number"] == 1
    refused = line.start_via_gateway(lot, "PROC-002")
    assert refused.status_code == 400
    assert refused.json()["error_code"] == "PREVIOUS_PROCESS_NOT_COMPLETED"
    assert refused.json()["data"]["previous_process"] == "레이저 마킹"
    duplicate = line.start_via_gateway(lot, "PROC-001")
    assert duplicate.status_code == 409 and duplicate.json()["error_code"] == "DUPLICATE_START"
    unknown = line.start_via_gateway("WF-KR-000101D-555", "PROC-001")
    assert unknown.status_code == 404 and unknown.json()["error_code"] == "LOT_NOT_FOUND"


def test_tc_proc_003_completion_file_is_picked_up_and_stored(line: Line, db: psycopg.Connection) -> None:
    lot = line.create_lot()
    name, record = _run_process(line, lot, "PROC-001", "W003", random.Random(3))
    row = db.execute(
        "SELECT source_file_name, process_data, worker_id, result FROM process_results WHERE source_file_name = %s",
        (name,),
    ).fetchone()
    assert row is not None
    assert row[1] == record["process_data"] and row[2] == "W003" and row[3] == "PASS"
    assert not (line.stations["PROC-001"].pending / name).exists()


def _error_log(line: Line, process_id: str, name: str) -> str:
    path = line.stations[process_id].error / f"{name}.error.log"
    deadline = time.monotonic() + 5
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return path.read_text(encoding="utf-8")


def test_tc_proc_004_missing_required_data_goes_to_error_with_a_log(line: Line, db: psycopg.Connection) -> None:
    lot = line.create_lot()
    for step in ROUTE[:2]:
        _run_process(line, lot, step.process_id, "W001", random.Random(4))
    assert line.start_via_gateway(lot, "PROC-003").status_code == 200
    start, end = _times()
    record = completion_record("PROC-003", lot, "W001", start, end, random.Random(4))
    del record["process_data"]["temp_sensor"]["measured_temp"]
    name = line.drop_record(record)
    assert line.wait_disposition("PROC-003", name) == "error"
    text = _error_log(line, "PROC-003", name)
    assert "INVALID_PROCESS_DATA" in text and "measured_temp" in text and name in text
    stored = db.execute("SELECT count(*) FROM process_results WHERE source_file_name = %s", (name,)).fetchone()
    assert stored == (0,)
    assert line.lot(lot)["processes"][2]["status"] == "STARTED"


def test_tc_proc_005_server_side_rejections_go_to_error(line: Line) -> None:
    start, end = _times()
    ghost = completion_record("PROC-001", "WF-KR-000101D-321", "W001", start, end, random.Random(1))
    ghost_name = line.drop_record(ghost)
    assert line.wait_disposition("PROC-001", ghost_name) == "error"
    assert "LOT_NOT_FOUND" in _error_log(line, "PROC-001", ghost_name)
    lot = line.create_lot()
    not_started = completion_record("PROC-001", lot, "W001", start, end, random.Random(1))
    name = line.drop_record(not_started)
    assert line.wait_disposition("PROC-001", name) == "error"
    assert "PROCESS_NOT_STARTED" in _error_log(line, "PROC-001", name)


@pytest.mark.parametrize(
    ("name", "content", "code"),
    [
        ("WF-KR-000101D-001_PROC-002_20250110090000.json", b"{not json", "INVALID_JSON"),
        ("result_final.json", b"{}", "INVALID_FILE_NAME"),
    ],
)
def test_bad_files_are_rejected_at_the_station(line: Line, name: str, content: bytes, code: str) -> None:
    line.drop("PROC-002", name, content)
    assert line.wait_disposition("PROC-002", name) == "error"
    assert code in _error_log(line, "PROC-002", name)


def test_file_name_and_body_must_agree(line: Line) -> None:
    start, end = _times()
    lot = line.create_lot()
    record = completion_record("PROC-002", lot, "W001", start, end, random.Random(2))
    name = f"WF-KR-000101D-777_PROC-002_{end:%Y%m%d%H%M%S}.json"
    line.drop("PROC-002", name, json.dumps(record, ensure_ascii=False).encode())
    assert line.wait_disposition("PROC-002", name) == "error"
    assert "FILE_CONTENT_MISMATCH" in _error_log(line, "PROC-002", name)


def test_the_same_file_delivered_twice_is_stored_once(line: Line, db: psycopg.Connection) -> None:
    lot = line.create_lot()
    name, _ = _run_process(line, lot, "PROC-001", "W001", random.Random(9))
    content = (line.stations["PROC-001"].completed / name).read_bytes()
    copy_name = name  # the vendor app re-drops the identical file
    (line.stations["PROC-001"].completed / name).rename(line.stations["PROC-001"].completed / f"{name}.first")
    line.drop("PROC-001", copy_name, content)
    assert line.wait_disposition("PROC-001", copy_name) == "completed"
    count = db.execute(
        "SELECT count(*) FROM process_results r JOIN lots l ON l.id = r.lot_id WHERE l.lot_number = %s", (lot,)
    ).fetchone()
    assert count == (1,)


def test_failed_result_is_recorded_with_its_cause(line: Line, db: psycopg.Connection) -> None:
    lot = line.create_lot()
    for step in ROUTE[:5]:
        _run_process(line, lot, step.process_id, "W001", random.Random(6))
    assert line.start_via_gateway(lot, "PROC-006").status_code == 200
    start, end = _times()
    record = completion_record("PROC-006", lot, "W006", start, end, random.Random(6), fail=True)
    name = line.drop_record(record)
    assert line.wait_disposition("PROC-006", name) == "completed"
    row = db.execute(
        "SELECT result, failure_reasons FROM process_results WHERE source_file_name = %s", (name,)
    ).fetchone()
    assert row is not None and row[0] == "FAIL" and len(row[1]) >= 1
    deadline = time.monotonic() + 5
    while line.lot(lot)["processes"][5]["result"] != "FAIL" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert line.lot(lot)["processes"][5]["result"] == "FAIL"
