"""Label API against a real emulated printer: reprint (TC-SN-004), history, serial detail, roles, preview; print
results recorded once."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import psycopg
import pytest

from deploy.localstack.services import MosquittoServer
from mes_contracts.envelope import MessageType, Outcome, ReplyPayload, make_envelope
from mes_contracts.labels import PrinterState, PrintResult, PrintStatus
from mes_contracts.topics import Name
from tests.support.auth import RoleAuth
from tests.support.labels_api import PRINTER, SILENT_PRINTER, SILENT_STATION, assert_error, decode, post, serial_request
from tests.support.line import start_body
from tests.support.mqtt import Requester
from tests.support.printers import EmulatedPrinter, StandInStation, advance, create_lot

pytestmark = pytest.mark.plain_pg  # issue 14: also run on plain PostgreSQL (test.sh's second pass)


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
