"""Label API against a real emulated printer: the printer registry, and §4.3 print with every error."""

from __future__ import annotations

import time
import uuid
from datetime import date
from typing import Any

import httpx
import psycopg
import pytest

from mes_contracts.labels import PrinterState
from tests.support.labels_api import PRINTER, SILENT_PRINTER, assert_error, lot_request, post, serial_request
from tests.support.printers import EmulatedPrinter, create_lot

pytestmark = pytest.mark.plain_pg  # issue 14: also run on plain PostgreSQL (test.sh's second pass)


# --- printer registry ------------------------------------------------------------------------------------------


def test_printer_registry_create_list_update_and_refusals(http: httpx.Client, db: psycopg.Connection) -> None:
    printer_id = f"REG-{uuid.uuid4().hex[:8]}"
    body = {
        "printer_id": printer_id,
        "station": "st03",
        "transport": "serial",
        "serial_port": "COM3",
        "baud": 9600,
        "language": "TSPL",
        "dpi": 300,
        "purposes": ["SERIAL"],
    }
    created = post(http, "/api/v1/printers", body)
    assert created.status_code == 201, created.text
    assert created.json()["message"] == "프린터가 등록되었습니다"
    data = created.json()["data"]
    assert (
        data["transport"],
        data["serial_port"],
        data["language"],
        data["dpi"],
        data["purposes"],
        data["site"],
        data["line"],
        data["active"],
    ) == ("serial", "COM3", "TSPL", 300, ["SERIAL"], "KR", "L1", True)
    assert_error(post(http, "/api/v1/printers", body), 409, "DUPLICATE_PRINTER")
    assert_error(
        post(http, "/api/v1/printers", {**body, "printer_id": "X-1", "serial_port": None}), 422, "INVALID_REQUEST"
    )
    listed = http.get("/api/v1/printers", params={"station": "st03"}, timeout=10).json()["data"]
    assert [p["printer_id"] for p in listed] == [printer_id]
    patched = http.patch(
        f"/api/v1/printers/{printer_id}", json={"active": False, "transport": "tcp", "host": "10.0.0.7"}, timeout=10
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["data"]["active"] is False and patched.json()["data"]["host"] == "10.0.0.7"
    assert_error(http.patch("/api/v1/printers/NOPE", json={"active": True}, timeout=10), 404, "PRINTER_NOT_FOUND")
    assert_error(http.patch(f"/api/v1/printers/{printer_id}", json={"host": None}, timeout=10), 422, "INVALID_REQUEST")
    audit = db.execute(
        "SELECT action, old_value, new_value FROM audit_log WHERE entity = 'printer' AND entity_key = %s ORDER BY id",
        (printer_id,),
    ).fetchall()
    assert [row[0] for row in audit] == ["printer.create", "printer.update"]
    assert audit[1][1] == {"active": True, "transport": "serial", "host": None}
    assert audit[1][2] == {"active": False, "transport": "tcp", "host": "10.0.0.7"}


# --- POST /api/v1/label/print ----------------------------------------------------------------------------------


def test_lot_label_print_success_body_and_label_at_the_printer(
    http: httpx.Client, ready: EmulatedPrinter, db: psycopg.Connection
) -> None:
    lot = create_lot(http, quantity=50, printer_id=PRINTER)
    response = post(http, "/api/v1/label/print", lot_request(lot))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success" and body["message"] == "라벨이 출력되었습니다."
    data = body["data"]
    assert data["label_type"] == "LOT" and data["serial_number"] is None
    assert data["lot_number"] == lot["lot_number"] and data["printer_id"] == PRINTER
    assert date.fromisoformat(data["print_time"][:10]) and "+09:00" in data["print_time"]
    # Two labels: the one queued at LOT creation (TC-LOT-003) and this one.
    deadline = time.monotonic() + 30
    while ready.barcodes().count(lot["lot_number"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ready.barcodes().count(lot["lot_number"]) == 2
    job = db.execute(
        "SELECT status, mode, reprint, printer_state FROM label_print_jobs WHERE job_id = %s", (data["job_id"],)
    ).fetchone()
    assert job == ("printed", "immediate", False, "ready")


def test_serial_label_print_of_an_issued_serial(
    http: httpx.Client, ready: EmulatedPrinter, serial_lot: dict[str, Any]
) -> None:
    serial = serial_lot["serials"][1]
    response = post(http, "/api/v1/label/print", serial_request(serial_lot, serial))
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["label_type"] == "SERIAL" and data["serial_number"] == serial
    assert ready.barcodes().count(serial) == 2  # issued at PROC-007, printed again here


def test_print_errors_from_real_printer_conditions(
    http: httpx.Client, ready: EmulatedPrinter, serial_lot: dict[str, Any]
) -> None:
    serial = serial_lot["serials"][0]
    before = len(ready.labels())
    ready.set_state(PrinterState.PAPER_OUT)
    assert_error(
        post(http, "/api/v1/label/print", serial_request(serial_lot, serial)),
        503,
        "PRINTER_OUT_OF_PAPER",
        printer_id=PRINTER,
        printer_status="paper_out",
    )
    ready.set_state(PrinterState.HEAD_OPEN)
    assert_error(
        post(http, "/api/v1/label/print", serial_request(serial_lot, serial)),
        503,
        "PRINTER_NOT_CONNECTED",
        printer_id=PRINTER,
        printer_status="head_open",
    )
    ready.set_state(PrinterState.OFFLINE)
    body = assert_error(
        post(http, "/api/v1/label/print", serial_request(serial_lot, serial)),
        503,
        "PRINTER_NOT_CONNECTED",
        printer_id=PRINTER,
        printer_status="offline",
    )
    assert body["message"] == "프린터 연결 실패"
    ready.set_state(PrinterState.READY)
    assert len(ready.labels()) == before  # nothing was printed while the printer could not print


def test_print_refusals_unknown_printer_and_invalid_data(
    http: httpx.Client, ready: EmulatedPrinter, serial_lot: dict[str, Any]
) -> None:
    serial = serial_lot["serials"][0]
    assert_error(
        post(http, "/api/v1/label/print", serial_request(serial_lot, serial, printer_id="NOPE-1")),
        404,
        "PRINTER_NOT_FOUND",
        printer_id="NOPE-1",
    )
    other = create_lot(http, quantity=5)
    invalid = [
        serial_request(serial_lot, f"{other['lot_number']}-0001"),  # not an issued serial
        serial_request(other, serial),  # a serial of another LOT
        serial_request(serial_lot, serial, product_model="Other^FDX"),  # not the LOT's product
        lot_request(other, lot_number="WF-KR-991231D-999"),  # unknown LOT
        lot_request(other, target_quantity=0),  # schema: 1..9999
        lot_request(other, created_date="2025-13-40"),
        {k: v for k, v in lot_request(other).items() if k != "product_model"},
        {**lot_request(other), "label_type": "BOX"},
        {**lot_request(other), "extra": 1},
    ]
    for body in invalid:
        assert_error(post(http, "/api/v1/label/print", body), 422, "INVALID_LABEL_DATA")
    raw = http.post(
        "/api/v1/label/print", content=b"{not json", timeout=10, headers={"Content-Type": "application/json"}
    )
    assert_error(raw, 422, "INVALID_LABEL_DATA")
    english = http.post(
        "/api/v1/label/print", json={"label_type": "LOT"}, timeout=10, headers={"Accept-Language": "en"}
    )
    assert assert_error(english, 422, "INVALID_LABEL_DATA")["message"] == "Invalid label data"


def test_station_not_answering_times_out_as_printer_not_connected(
    http: httpx.Client, ready: EmulatedPrinter, serial_lot: dict[str, Any], db: psycopg.Connection
) -> None:
    serial = serial_lot["serials"][0]
    started = time.monotonic()
    response = post(http, "/api/v1/label/print", serial_request(serial_lot, serial, printer_id=SILENT_PRINTER))
    assert time.monotonic() - started >= 5  # it waited for the station (MES_LABEL_PRINT_TIMEOUT_S)
    assert_error(response, 503, "PRINTER_NOT_CONNECTED", printer_id=SILENT_PRINTER, printer_status="offline")
    job = db.execute(
        "SELECT status, error_code, printer_state FROM label_print_jobs WHERE printer_id = %s "
        "ORDER BY queue_seq DESC LIMIT 1",
        (SILENT_PRINTER,),
    ).fetchone()
    assert job == ("failed", "PRINTER_NOT_CONNECTED", "offline")
