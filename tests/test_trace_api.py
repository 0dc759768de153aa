"""Trace, recall and defects through the public API on a real line (TC-TRACE-001…006, issue 13 points 1–3).

One LOT of 3 units runs through all 8 processes over the gateways: PROC-003 fails once at LOT level (62.5 °C
against 60 ± 1: one unit leaves the cart, so PROC-007 issues 2 serials), PROC-007 passes at LOT level, and
PROC-008 reports each unit: the first serial PASS, the second FAIL.
"""

from __future__ import annotations

import csv
import io
import itertools
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from deploy.localstack.services import PostgresServer
from line_simulator.payloads import completion_record
from mes_contracts.route import ROUTE
from tests.support.auth import RoleAuth
from tests.support.line import SEOUL, Line

pytestmark = pytest.mark.plain_pg


@dataclass
class TracedLot:
    lot: str
    serials: list[str]
    spring_lot: str
    records: dict[str, dict[str, Any]]


def _times() -> tuple[datetime, datetime]:
    end = datetime.now(SEOUL).replace(microsecond=0)
    return end - timedelta(minutes=3), end


_STAMPS = itertools.count(1)


def _complete(line: Line, record: dict[str, Any]) -> None:
    # Distinct file names even for two files of one process within a second.
    name = line.drop_record(record, stamp=datetime.now(SEOUL) + timedelta(seconds=next(_STAMPS)))
    assert line.wait_disposition(record["process_id"], name) == "completed"


@pytest.fixture(scope="module")
def traced(line: Line, postgres: PostgresServer) -> TracedLot:
    rng = random.Random(13)
    lot = line.create_lot(quantity=3)
    spring = f"SPR-{uuid.uuid4().hex[:10]}"
    # The firmware the station reports at PROC-004 is in the registry (inactive: no other test's start sees it).
    firmware = f"v9.{uuid.uuid4().int % 10**6}.0"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO firmware_versions (version, filename, file_size, md5_hash, sha256, storage_key, uploaded_by) "
            "VALUES (%s, %s, 1024, %s, %s, %s, 't-admin')",
            (firmware, f"firmware_{firmware}.bin", "d41d8cd98f00b204e9800998ecf8427e", "0" * 64, f"test/{firmware}"),
        )
    records: dict[str, dict[str, Any]] = {}
    serials: list[str] = []
    for step in ROUTE:
        worker = f"W{step.sequence:03d}"
        started = line.start_via_gateway(lot, step.process_id, worker)
        assert started.status_code == 200, started.text
        start, end = _times()
        overrides: dict[str, Any] = {}
        if step.process_id == "PROC-002":
            overrides["process_data"] = {"sma_spring_lot": spring}
        if step.process_id == "PROC-004":
            overrides["process_data"] = {"firmware_version": firmware}
        if step.process_id == "PROC-003":
            overrides["process_data"] = {
                "temp_sensor": {"measured_temp": 62.5, "target_temp": 60.0, "tolerance": 1.0, "result": "FAIL"},
                "overall_result": "FAIL",
            }
        if step.process_id == "PROC-007":
            serials = list(started.json()["data"]["serial_numbers"])
        if step.process_id == "PROC-008":
            for serial, fail in zip(serials, (False, True), strict=True):
                record = completion_record(
                    step.process_id, lot, worker, start, end, rng, fail=fail, serial_number=serial
                )
                _complete(line, record)
                records[f"PROC-008/{serial}"] = record
            continue
        record = completion_record(step.process_id, lot, worker, start, end, rng, **overrides)
        _complete(line, record)
        records[step.process_id] = record
    return TracedLot(lot, serials, spring, records)


def _get(line: Line, auth: RoleAuth, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{line.api_url}{path}", params=params, auth=auth.viewer, timeout=15)


def test_serials_issued_minus_the_failed_unit(traced: TracedLot) -> None:
    assert traced.serials == [f"{traced.lot}-0001", f"{traced.lot}-0002"]


def test_tc_trace_001_lot_shows_all_8_process_records(line: Line, auth: RoleAuth, traced: TracedLot) -> None:
    answer = _get(line, auth, f"/api/v1/trace/lots/{traced.lot}")
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert [p["process_id"] for p in data["processes"]] == [s.process_id for s in ROUTE]
    assert all(p["status"] == "COMPLETED" and p["work_order_id"] for p in data["processes"])
    assert all(len(p["results"]) >= 1 for p in data["processes"])
    final = data["processes"][7]["results"]
    assert {(r["serial_number"], r["result"], r["level"]) for r in final} == {
        (traced.serials[0], "PASS", "UNIT"),
        (traced.serials[1], "FAIL", "UNIT"),
    }
    assert data["serial_counts"] == {"PASSED": 1, "FAILED": 1}
    assert [(s["serial_number"], s["status"], s["failed_process"]) for s in data["serials"]] == [
        (traced.serials[0], "PASSED", None),
        (traced.serials[1], "FAILED", "PROC-008"),
    ]
    assert [h["to_status"] for h in data["status_history"]] == ["CREATED", "IN_PROGRESS", "COMPLETED"]


def test_tc_trace_002_serial_history_and_data(line: Line, auth: RoleAuth, traced: TracedLot) -> None:
    answer = _get(line, auth, f"/api/v1/trace/serials/{traced.serials[0]}")
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert data["serial"]["status"] == "PASSED" and data["lot"]["lot_number"] == traced.lot
    assert [(h["from_status"], h["to_status"]) for h in data["status_history"]] == [
        ("CREATED", "IN_PROGRESS"),
        ("IN_PROGRESS", "PASSED"),
    ]
    assert [h["process_id"] for h in data["status_history"]] == ["PROC-007", "PROC-008"]
    processes = {p["process_id"]: p for p in data["processes"]}
    assert len(processes) == 8
    # The LOT-level results before PROC-007 belong to every serial; PROC-008 shows only this serial's own result.
    assert [r["level"] for r in processes["PROC-001"]["results"]] == ["LOT"]
    assert [r["serial_number"] for r in processes["PROC-008"]["results"]] == [traced.serials[0]]
    assert processes["PROC-008"]["serial_result"] == "PASS"
    stored = processes["PROC-006"]["results"][0]
    assert stored["process_data"] == traced.records["PROC-006"]["process_data"]
    forces = [m for m in stored["measurements"] if m["characteristic"] == "force"]
    assert forces and all(m["target"] is not None and m["result"] in ("PASS", "FAIL") for m in forces)
    version = traced.records["PROC-004"]["process_data"]["firmware_version"]
    assert data["firmware"]["version"] == version
    assert data["firmware"]["md5_hash"] == "d41d8cd98f00b204e9800998ecf8427e"
    assert processes["PROC-004"]["results"][0]["firmware"]["version"] == version
    assert {(c["component_kind"], c["component_lot"]) for c in data["component_lots"]} >= {
        ("sma_spring", traced.spring_lot)
    }
    assert isinstance(data["labels"], list)
    times = datetime.fromisoformat(processes["PROC-001"]["start_time"])
    assert times.utcoffset() == timedelta(hours=9)  # factory time with its offset


def test_serial_status_history_is_stored(db: psycopg.Connection, traced: TracedLot) -> None:
    rows = db.execute(
        "SELECT s.serial_number, h.from_status, h.to_status, h.cause FROM serial_status_history h "
        "JOIN serials s ON s.id = h.serial_id WHERE s.serial_number = ANY(%s) ORDER BY s.serial_number, h.id",
        (traced.serials,),
    ).fetchall()
    assert rows == [
        (traced.serials[0], "CREATED", "IN_PROGRESS", "PROC-007 PASS"),
        (traced.serials[0], "IN_PROGRESS", "PASSED", "PROC-008 PASS"),
        (traced.serials[1], "CREATED", "IN_PROGRESS", "PROC-007 PASS"),
        (traced.serials[1], "IN_PROGRESS", "FAILED", "PROC-008 FAIL"),
    ]
    linked = db.execute(
        "SELECT count(*) FROM process_results r JOIN serials s ON s.id = r.serial_id WHERE s.serial_number = ANY(%s)",
        (traced.serials,),
    ).fetchone()
    assert linked == (2,)


def test_tc_trace_003_recall_by_component_lot(line: Line, auth: RoleAuth, traced: TracedLot) -> None:
    answer = _get(line, auth, "/api/v1/trace/components", kind="sma_spring", lot=traced.spring_lot)
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert data["lot_count"] == 1 and data["serial_count"] == 2
    assert data["serial_counts"] == {"PASSED": 1, "FAILED": 1}
    (used,) = data["lots"]
    assert used["lot_number"] == traced.lot and used["process_id"] == "PROC-002"
    assert [s["serial_number"] for s in used["serials"]] == traced.serials
    any_kind = _get(line, auth, "/api/v1/trace/components", lot=traced.spring_lot).json()["data"]
    assert any_kind["lots"] == data["lots"]
    empty_kind = _get(line, auth, "/api/v1/trace/components", kind="", lot=traced.spring_lot).json()["data"]
    assert empty_kind["lots"] == data["lots"] and empty_kind["component_kind"] is None
    assert _get(line, auth, "/api/v1/trace/components", kind="sma_spring").status_code == 422  # lot is required
    assert (
        _get(line, auth, "/api/v1/trace/components", kind="busbar", lot=traced.spring_lot).json()["data"]["lots"] == []
    )


def test_recall_csv_opens_in_excel(line: Line, auth: RoleAuth, traced: TracedLot) -> None:
    by_param = _get(line, auth, "/api/v1/trace/components", lot=traced.spring_lot, format="csv")
    assert by_param.status_code == 200 and by_param.headers["content-type"].startswith("text/csv")
    assert by_param.content.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM
    rows = list(csv.reader(io.StringIO(by_param.content.decode("utf-8-sig"))))
    assert rows[0][:3] == ["부품 종류", "부품 LOT", "LOT 번호"]
    assert [(r[2], r[10], r[11]) for r in rows[1:]] == [
        (traced.lot, traced.serials[0], "PASSED"),
        (traced.lot, traced.serials[1], "FAILED"),
    ]
    by_accept = httpx.get(
        f"{line.api_url}/api/v1/trace/components",
        params={"lot": traced.spring_lot, "lang": "en"},
        headers={"Accept": "text/csv"},
        auth=auth.viewer,
    )
    assert by_accept.status_code == 200 and by_accept.text.lstrip("\ufeff").startswith("component_kind,")


def test_recall_csv_of_any_component_lot_text_names_its_file(line: Line, auth: RoleAuth) -> None:
    # Found by the API fuzz test: a component lot in Hangul (or with control characters) made the Latin-1
    # Content-Disposition header fail with a 500; the name now travels as RFC 6266 filename* in UTF-8.
    answer = _get(line, auth, "/api/v1/trace/components", lot="스프링-\x1c로트", format="csv")
    assert answer.status_code == 200, answer.text
    disposition = answer.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="recall-') and disposition.isascii()
    assert "filename*=UTF-8''recall-%EC%8A%A4%ED%94%84%EB%A7%81-_%EB%A1%9C%ED%8A%B8.csv" in disposition


def test_tc_trace_004_defect_traced_to_process_and_cause(line: Line, auth: RoleAuth, traced: TracedLot) -> None:
    answer = _get(line, auth, "/api/v1/defects", process_id="PROC-003")
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    mine = [d for d in data["defects"] if d["lot_number"] == traced.lot]
    assert len(mine) == 1
    defect = mine[0]
    assert defect["failure_reasons"] == ["temp_sensor"] and defect["worker_id"] == "W003"
    assert defect["station"].endswith("st03") and defect["serial_number"] is None
    (measured,) = defect["measurements"]
    assert measured["value"] == 62.5 and measured["out_of_limits"] is True
    assert (measured["lower_limit"], measured["upper_limit"]) == (59.0, 61.0)
    assert "62.5" in defect["cause"] and "59" in defect["cause"]
    assert {"process_id": "PROC-003", "count": data["total"]} in data["by_process"]
    assert any(c["cause"] == "temp_sensor" and c["count"] >= 1 for c in data["by_cause"])
    unit = _get(line, auth, "/api/v1/defects", process_id="PROC-008").json()["data"]["defects"]
    assert traced.serials[1] in {d["serial_number"] for d in unit}


def test_defect_window_and_filters(line: Line, auth: RoleAuth, traced: TracedLot) -> None:
    today = datetime.now(SEOUL).date().isoformat()
    all_today = _get(line, auth, "/api/v1/defects", **{"from": today, "to": today}).json()["data"]
    assert all_today["total"] == sum(c["count"] for c in all_today["by_process"])
    assert all_today["total"] >= 2
    past = _get(line, auth, "/api/v1/defects", **{"from": "2020-01-01", "to": "2020-01-02"}).json()["data"]
    assert past["total"] == 0 and past["defects"] == []
    assert _get(line, auth, "/api/v1/defects", process_id="PROC-999").status_code == 422
    reversed_window = _get(line, auth, "/api/v1/defects", **{"from": today, "to": "2020-01-01"})
    assert reversed_window.status_code == 422


def test_tc_trace_005_worker_per_process(line: Line, auth: RoleAuth, traced: TracedLot) -> None:
    data = _get(line, auth, f"/api/v1/trace/lots/{traced.lot}").json()["data"]
    for step, process in zip(ROUTE, data["processes"], strict=True):
        worker = f"W{step.sequence:03d}"
        assert process["start_worker_id"] == process["complete_worker_id"] == worker
        assert all(r["worker_id"] == worker for r in process["results"])
        assert process["start_station"] and all(r["station"] for r in process["results"])


def test_tc_trace_006_nothing_missing_for_a_sample_lot(line: Line, auth: RoleAuth, traced: TracedLot) -> None:
    data = _get(line, auth, f"/api/v1/trace/lots/{traced.lot}").json()["data"]
    processes = {p["process_id"]: p for p in data["processes"]}
    for process in data["processes"]:
        for key in ("work_order_id", "start_time", "complete_time", "start_worker_id", "complete_worker_id", "result"):
            assert process[key] is not None, (process["process_id"], key)
        for result in process["results"]:
            assert result["process_data"] and result["file_name"]
    assert processes["PROC-003"]["results"][0]["measurements"]
    assert processes["PROC-006"]["results"][0]["measurements"]
    assert {c["component_kind"] for c in processes["PROC-002"]["results"][0]["component_lots"]} == {
        "sma_spring",
        "busbar",
    }
    assert data["firmware"]["version"] == traced.records["PROC-004"]["process_data"]["firmware_version"]
    assert len(data["serials"]) == 2


def test_english_names_and_not_found(line: Line, auth: RoleAuth, traced: TracedLot) -> None:
    english = _get(line, auth, f"/api/v1/trace/serials/{traced.serials[0]}", lang="en").json()["data"]
    assert english["processes"][0]["process_name"] == "Laser marking"
    missing = _get(line, auth, f"/api/v1/trace/serials/{traced.lot}-9999")
    assert missing.status_code == 404 and missing.json()["error_code"] == "SERIAL_NOT_FOUND"
    no_lot = _get(line, auth, "/api/v1/trace/lots/WF-KR-000101D-999")
    assert no_lot.status_code == 404 and no_lot.json()["error_code"] == "LOT_NOT_FOUND"
    assert httpx.get(f"{line.api_url}/api/v1/trace/lots/{traced.lot}").status_code == 401


def test_lots_filter_by_component_lot(line: Line, auth: RoleAuth, traced: TracedLot) -> None:
    found = _get(line, auth, "/api/v1/lots", component_lot=traced.spring_lot)
    assert found.status_code == 200, found.text
    assert [lot["lot_number"] for lot in found.json()["data"]] == [traced.lot]
    assert (
        _get(line, auth, "/api/v1/lots", component_lot=traced.spring_lot, component_kind="busbar").json()["data"] == []
    )
    assert _get(line, auth, "/api/v1/lots", component_lot="NO-SUCH-LOT").json()["data"] == []


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/lots",
        "/api/v1/label/history",
        "/api/v1/printers",
        "/api/v1/firmware",
        "/api/v1/workers",
        "/api/v1/product-models",
        "/api/v1/route",
        "/api/v1/defects",
        "/api/v1/trace/components",
    ],
)
def test_unknown_query_parameters_are_refused(line: Line, auth: RoleAuth, path: str) -> None:
    answer = _get(line, auth, path, stauts="CLOSED")
    assert answer.status_code == 422, answer.text
    assert answer.json()["error_code"] == "INVALID_REQUEST"
    assert "stauts: unknown query parameter" in answer.json()["data"]["errors"]


def test_known_query_parameters_still_work(line: Line, auth: RoleAuth, traced: TracedLot) -> None:
    assert _get(line, auth, "/api/v1/lots", status="COMPLETED", limit=5).status_code == 200
    assert _get(line, auth, "/api/v1/label/history", lot_number=traced.lot).status_code == 200
    assert _get(line, auth, "/api/v1/printers", active="true").status_code == 200
    admin_users = httpx.get(f"{line.api_url}/api/v1/users", params={"rol": "viewer"}, auth=auth.admin)
    assert admin_users.status_code == 422
