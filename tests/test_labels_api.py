"""Label API against a real emulated printer: registry, §4.3 print with every error, reprint (TC-SN-004),
history, serial detail, preview; print results recorded once."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import zxingcpp
from PIL import Image

from deploy.localstack.children import ChildProcess
from deploy.localstack.services import MosquittoServer
from mes_contracts.envelope import MessageType, Outcome, ReplyPayload, make_envelope
from mes_contracts.labels import PrinterState, PrintResult, PrintStatus
from mes_contracts.topics import Name
from tests.support.auth import RoleAuth
from tests.support.line import start_body
from tests.support.mqtt import Requester
from tests.support.printers import (
    EmulatedPrinter,
    StandInStation,
    advance,
    create_lot,
    deactivate,
    register,
)

pytestmark = pytest.mark.plain_pg  # issue 14: also run on plain PostgreSQL (test.sh's second pass)

STATION = "st91"
PRINTER = "API-ZT410"
SILENT_STATION = "st92"  # a station whose gateway is down: nobody takes its jobs
SILENT_PRINTER = "API-SILENT"


@pytest.fixture(scope="module")
def http(api_url: str, auth: RoleAuth) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, auth=auth.admin, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def printer(
    http: httpx.Client, ingestor: ChildProcess, tmp_path_factory: pytest.TempPathFactory, logs_dir: Path
) -> Iterator[EmulatedPrinter]:
    emulator = EmulatedPrinter("api", tmp_path_factory.mktemp("printer-api"), logs_dir).start()
    register(http, emulator.printer_body(PRINTER, STATION, ["LOT", "SERIAL"]))
    register(http, emulator.printer_body(SILENT_PRINTER, SILENT_STATION, ["SERIAL"]))
    yield emulator
    deactivate(http, PRINTER)
    deactivate(http, SILENT_PRINTER)
    emulator.stop()


@pytest.fixture(scope="module")
def station(broker: MosquittoServer, printer: EmulatedPrinter) -> Iterator[StandInStation]:
    stand_in = StandInStation(broker.port, STATION)
    yield stand_in
    stand_in.close()


@pytest.fixture
def ready(printer: EmulatedPrinter, station: StandInStation) -> Iterator[EmulatedPrinter]:
    printer.set_state(PrinterState.READY)
    yield printer
    printer.set_state(PrinterState.READY)


@pytest.fixture(scope="module")
def serial_lot(http: httpx.Client, printer: EmulatedPrinter, station: StandInStation) -> dict[str, Any]:
    """A LOT of 3 with its serials issued (PROC-007 started on the API printer)."""
    lot = create_lot(http, quantity=3, printer_id=PRINTER)
    advance(http, lot["lot_number"])
    body = {**start_body(lot["lot_number"], "PROC-007", "W007"), "printer_id": PRINTER}
    started = http.post("/api/v1/process/start", json=body)
    assert started.status_code == 200, started.text
    printer.wait_barcodes(started.json()["data"]["serial_numbers"])
    return {**lot, "serials": started.json()["data"]["serial_numbers"]}


def post(http: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    return http.post(path, json=body)


def lot_request(lot: dict[str, Any], printer_id: str = PRINTER, **changes: Any) -> dict[str, Any]:
    body = {
        "label_type": "LOT",
        "lot_number": lot["lot_number"],
        "product_model": lot["product_model"],
        "target_quantity": lot["target_quantity"],
        "created_date": lot["created_date"],
        "printer_id": printer_id,
    }
    return {**body, **changes}


def serial_request(lot: dict[str, Any], serial: str, **changes: Any) -> dict[str, Any]:
    body = {
        "label_type": "SERIAL",
        "serial_number": serial,
        "lot_number": lot["lot_number"],
        "product_model": lot["product_model"],
        "created_date": lot["created_date"],
        "printer_id": PRINTER,
    }
    return {**body, **changes}


def decode(png: bytes) -> list[str]:
    return [result.text for result in zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))]


def assert_error(response: httpx.Response, status: int, code: str, **data: Any) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "error" and body["error_code"] == code, body
    for key, value in data.items():
        assert body["data"][key] == value, body
    return dict(body)


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


# --- reprint, history, serial detail (TC-SN-004) ----------------------------------------------------------------


def test_tc_sn_004_reprint_same_serial_recorded_with_reason_worker_and_time(
    http: httpx.Client, ready: EmulatedPrinter, serial_lot: dict[str, Any], db: psycopg.Connection
) -> None:
    serial = serial_lot["serials"][2]
    serials_before = db.execute("SELECT count(*) FROM serials").fetchone()
    body = {"serial_number": serial, "reason": "라벨 훼손 (damaged)", "worker_id": "W003"}
    response = post(http, "/api/v1/label/reprint", body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["message"] == "라벨이 재출력되었습니다."
    data = answer["data"]
    assert data["serial_number"] == serial and data["reprint"] is True and data["printer_id"] == PRINTER
    assert db.execute("SELECT count(*) FROM serials").fetchone() == serials_before  # never a new number
    assert ready.barcodes().count(serial) == 2
    reprints = db.execute(
        "SELECT label_key, reason, worker_id, requested_at, status FROM label_reprints WHERE label_key = %s", (serial,)
    ).fetchall()
    assert len(reprints) == 1
    key, reason, worker, requested_at, status = reprints[0]
    assert (key, reason, worker, status) == (serial, "라벨 훼손 (damaged)", "W003", "printed")
    assert requested_at is not None
    history = http.get("/api/v1/label/history", params={"serial_number": serial}, timeout=10)
    rows = history.json()["data"]
    assert [(r["reprint"], r["status"]) for r in rows] == [(False, "printed"), (True, "printed")]
    assert rows[1]["reason"] == "라벨 훼손 (damaged)" and rows[1]["worker_id"] == "W003"
    assert rows[1]["requested_at"] and rows[1]["printed_at"]
    detail = http.get(f"/api/v1/serials/{serial}", timeout=10).json()["data"]
    assert detail["lot_number"] == serial_lot["lot_number"] and detail["sequence"] == 3
    assert [r["reprint"] for r in detail["label_history"]] == [False, True]
    audit = db.execute(
        "SELECT reason FROM audit_log WHERE action = 'label.reprint' AND entity_key = %s", (serial,)
    ).fetchall()
    assert audit == [("라벨 훼손 (damaged)",)]


def test_reprint_of_a_lot_label_and_refusals(
    http: httpx.Client, ready: EmulatedPrinter, serial_lot: dict[str, Any]
) -> None:
    lot = serial_lot["lot_number"]
    response = post(http, "/api/v1/label/reprint", {"lot_number": lot, "reason": "분실", "worker_id": "W001"})
    assert response.status_code == 200, response.text
    assert response.json()["data"]["label_type"] == "LOT" and response.json()["data"]["serial_number"] is None
    lot_rows = http.get("/api/v1/label/history", timeout=10, params={"lot_number": lot, "label_type": "LOT"}).json()[
        "data"
    ]
    assert [r["reprint"] for r in lot_rows] == [False, True]
    serial = serial_lot["serials"][0]
    assert_error(
        post(http, "/api/v1/label/reprint", {"serial_number": serial, "reason": "x", "worker_id": "W404"}),
        404,
        "WORKER_NOT_FOUND",
    )
    assert_error(
        post(http, "/api/v1/label/reprint", {"serial_number": serial, "reason": "x", "worker_id": "W999"}),
        404,
        "WORKER_NOT_FOUND",
    )  # a worker who left
    assert_error(
        post(http, "/api/v1/label/reprint", {"serial_number": f"{lot}-0099", "reason": "x", "worker_id": "W001"}),
        404,
        "SERIAL_NOT_FOUND",
    )
    for bad in (
        {"serial_number": serial, "reason": "  ", "worker_id": "W001"},
        {"serial_number": serial, "worker_id": "W001"},
        {"serial_number": serial, "lot_number": lot, "reason": "x", "worker_id": "W001"},
    ):
        assert_error(post(http, "/api/v1/label/reprint", bad), 422, "INVALID_LABEL_DATA")


def test_roles_print_is_for_managers_reprint_for_operators_registry_for_admins(
    api_url: str, auth: RoleAuth, ready: EmulatedPrinter, serial_lot: dict[str, Any], db: psycopg.Connection
) -> None:
    serial = serial_lot["serials"][0]
    url = f"{api_url}/api/v1"

    def call(method: str, path: str, who: Any, **kwargs: Any) -> int:
        return httpx.request(method, f"{url}{path}", auth=who, timeout=30, **kwargs).status_code

    print_body = serial_request(serial_lot, serial)
    reprint_body = {"serial_number": serial, "reason": "바코드 인식 불가", "worker_id": "W002"}
    assert call("POST", "/label/print", None, json=print_body) == 401
    assert call("POST", "/label/print", auth.operator, json=print_body) == 403
    assert call("POST", "/label/print", auth.manager, json=print_body) == 200
    assert call("POST", "/label/reprint", auth.viewer, json=reprint_body) == 403
    assert call("POST", "/label/reprint", auth.operator, json=reprint_body) == 200
    assert call("GET", "/label/history", auth.viewer, params={"serial_number": serial}) == 200
    assert call("GET", "/labels/preview.png", auth.viewer, params={"serial_number": serial}) == 200
    assert call("GET", "/printers", auth.viewer) == 200
    assert (
        call("POST", "/printers", auth.manager, json={"printer_id": "ROLE-1", "station": "st01", "host": "10.0.0.1"})
        == 403
    )
    assert call("PATCH", f"/printers/{PRINTER}", auth.manager, json={"active": True}) == 403
    actors = db.execute(
        "SELECT action, actor FROM audit_log WHERE entity = 'label' AND entity_key = %s "
        "AND actor IN ('t-manager', 't-operator') ORDER BY id",
        (serial,),
    ).fetchall()
    assert actors == [("label.print", "t-manager"), ("label.reprint", "t-operator")]
    requested = db.execute(
        "SELECT requested_by FROM label_reprints WHERE label_key = %s AND reason = %s", (serial, "바코드 인식 불가")
    ).fetchall()
    assert requested == [("t-operator",)]


# --- preview ------------------------------------------------------------------------------------------------------


def test_preview_png_barcode_decodes_to_the_serial_and_the_lot(http: httpx.Client, serial_lot: dict[str, Any]) -> None:
    serial = serial_lot["serials"][0]
    for params, expected in (
        ({"serial_number": serial}, serial),
        ({"lot_number": serial_lot["lot_number"], "dpi": "300"}, serial_lot["lot_number"]),
    ):
        response = http.get("/api/v1/labels/preview.png", params=params, timeout=30)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/png"
        assert decode(response.content) == [expected]
    assert_error(
        http.get("/api/v1/labels/preview.png", params={"serial_number": "WF-X"}, timeout=10), 404, "SERIAL_NOT_FOUND"
    )


# --- print results: once per message, only from the job's station -----------------------------------------------


def test_a_print_result_is_recorded_once_and_only_from_the_jobs_station(
    http: httpx.Client,
    broker: MosquittoServer,
    printer: EmulatedPrinter,
    db: psycopg.Connection,
) -> None:
    lot = create_lot(http, quantity=1)["lot_number"]
    advance(http, lot)
    body = {**start_body(lot, "PROC-007", "W007"), "printer_id": SILENT_PRINTER}
    serial = post(http, "/api/v1/process/start", body).json()["data"]["serial_numbers"][0]
    deadline = time.monotonic() + 20
    job: Any = None
    while time.monotonic() < deadline:  # the dispatcher sends it to the silent station
        job = db.execute(
            "SELECT job_id, status, target FROM label_print_jobs WHERE label_key = %s", (serial,)
        ).fetchone()
        if job and job[1] == "dispatched":
            break
        time.sleep(0.2)
    assert job is not None and job[1] == "dispatched" and job[2] == f"mes/v1/KR/L1/{SILENT_STATION}"
    silent = StandInStation(broker.port, SILENT_STATION)
    requester = Requester(broker.port, silent.address.reply(), f"results-{uuid.uuid4()}")
    answers: list[ReplyPayload] = []
    try:
        for status, state in ((PrintStatus.WAITING, PrinterState.PAPER_OUT), (PrintStatus.PRINTED, PrinterState.READY)):
            result = PrintResult(
                job_id=job[0],
                printer_id=SILENT_PRINTER,
                status=status,
                printer_state=state,
                error_code="PRINTER_OUT_OF_PAPER" if status is PrintStatus.WAITING else None,
            )
            envelope = make_envelope(
                MessageType.LABEL_PRINT_RESULT, silent.source, len(answers) + 1, result.model_dump(mode="json")
            )
            requester.send(silent.address.event(Name.PRINT_RESULT), envelope)
            answers.append(requester.reply(15))
        requester.send(silent.address.event(Name.PRINT_RESULT), envelope)  # the same message again
        answers.append(requester.reply(15))
    finally:
        requester.close()
        silent.close()
    assert [a.outcome for a in answers] == [Outcome.ACCEPTED, Outcome.ACCEPTED, Outcome.DUPLICATE]
    assert [a.body["data"]["status"] for a in answers] == ["waiting", "printed", "printed"]
    stored = db.execute(
        "SELECT status, result_message_id, printed_at IS NOT NULL FROM label_print_jobs WHERE job_id = %s", (job[0],)
    ).fetchone()
    assert stored == ("printed", envelope.message_id, True)

    intruder = StandInStation(broker.port, "st99")
    other = Requester(broker.port, intruder.address.reply(), f"intruder-{uuid.uuid4()}")
    try:
        late = PrintResult(
            job_id=job[0], printer_id=SILENT_PRINTER, status=PrintStatus.FAILED, printer_state=PrinterState.OFFLINE
        )
        forged = make_envelope(MessageType.LABEL_PRINT_RESULT, intruder.source, 1, late.model_dump(mode="json"))
        other.send(intruder.address.event(Name.PRINT_RESULT), forged)
        refused = other.reply(15)
    finally:
        other.close()
        intruder.close()
    assert refused.outcome is Outcome.REJECTED and refused.body["error_code"] == "INVALID_REQUEST"
    assert db.execute(
        "SELECT status, result_message_id FROM label_print_jobs WHERE job_id = %s", (job[0],)
    ).fetchone() == ("printed", envelope.message_id)
