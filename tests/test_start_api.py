"""Start (착공) over REST: the spec's success body and all five error codes (TC-PROC-001/002/006)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from line_simulator.payloads import completion_record
from tests.support.auth import RoleAuth
from tests.support.line import SEOUL, start_body

Post = Callable[..., httpx.Response]


@pytest.fixture
def post(api_url: str, auth: RoleAuth) -> Post:
    """POST as a production manager (LOTs, closing) — who may also start and complete, like an operator."""

    def _post(path: str, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
        return httpx.post(f"{api_url}{path}", json=body, timeout=15, auth=auth.manager, **kwargs)

    return _post


@pytest.fixture
def lot(post: Post) -> str:
    return str(post("/api/v1/lots", {"shift": "D"}).json()["data"]["lot_number"])


def _complete(post: Post, lot: str, process_id: str) -> None:
    import random

    now = datetime.now(SEOUL).replace(microsecond=0)
    record = completion_record(process_id, lot, "W002", now - timedelta(minutes=5), now, random.Random(1))
    response = post("/api/v1/process/complete", record)
    assert response.status_code == 200, response.text


def test_tc_proc_001_start_accepted_with_spec_body(post: Post, lot: str, db: psycopg.Connection) -> None:
    body = start_body(lot, "PROC-001", "W001")
    response = post("/api/v1/process/start", body)
    assert response.status_code == 200
    answer = response.json()
    assert answer["status"] == "success" and answer["message"] == "착공이 등록되었습니다"
    data = answer["data"]
    for key in ("lot_number", "process_id", "process_name", "worker_id"):
        assert data[key] == body[key]
    assert datetime.fromisoformat(data["start_time"]) == datetime.fromisoformat(body["start_time"])
    assert data["sequence_number"] == 1
    day = datetime.fromisoformat(body["start_time"]).strftime("%Y%m%d")
    assert data["work_order_id"].startswith(f"WO-{day}-")
    row = db.execute(
        "SELECT r.status, r.start_worker_id, r.work_order_id, l.status FROM process_runs r "
        "JOIN lots l ON l.id = r.lot_id WHERE l.lot_number = %s",
        (lot,),
    ).fetchone()
    assert row == ("STARTED", "W001", data["work_order_id"], "IN_PROGRESS")


def test_tc_proc_002_out_of_order_start_is_refused(post: Post, lot: str, db: psycopg.Connection) -> None:
    assert post("/api/v1/process/start", start_body(lot, "PROC-001")).status_code == 200
    _complete(post, lot, "PROC-001")
    assert post("/api/v1/process/start", start_body(lot, "PROC-002")).status_code == 200
    response = post("/api/v1/process/start", start_body(lot, "PROC-003"))
    assert response.status_code == 400
    assert response.json() == {
        "status": "error",
        "message": "이전 공정이 완료되지 않았습니다",
        "error_code": "PREVIOUS_PROCESS_NOT_COMPLETED",
        "data": {
            "lot_number": lot,
            "current_process": "센서 검사",
            "previous_process": "LMA 조립",
            "required_action": "LMA 조립 공정을 먼저 완료해주세요",
        },
    }
    runs = db.execute(
        "SELECT count(*) FROM process_runs r JOIN lots l ON l.id = r.lot_id "
        "WHERE l.lot_number = %s AND r.process_id = 'PROC-003'",
        (lot,),
    ).fetchone()
    assert runs == (0,)


def test_tc_proc_006_skipping_ahead_is_blocked_too(post: Post, lot: str) -> None:
    response = post("/api/v1/process/start", start_body(lot, "PROC-005"))
    assert response.status_code == 400
    assert response.json()["error_code"] == "PREVIOUS_PROCESS_NOT_COMPLETED"
    assert response.json()["data"]["previous_process"] == "펌웨어 업로드"


def test_unknown_lot_and_worker(post: Post, lot: str) -> None:
    unknown = post("/api/v1/process/start", start_body("WF-KR-000101D-999", "PROC-001"))
    assert unknown.status_code == 404 and unknown.json()["error_code"] == "LOT_NOT_FOUND"
    assert unknown.json()["message"] == "LOT 번호가 존재하지 않습니다"
    nobody = post("/api/v1/process/start", start_body(lot, "PROC-001", worker="W404"))
    assert nobody.status_code == 404 and nobody.json()["error_code"] == "WORKER_NOT_FOUND"
    retired = post("/api/v1/process/start", start_body(lot, "PROC-001", worker="W999"))
    assert retired.status_code == 404 and retired.json()["error_code"] == "WORKER_NOT_FOUND"


def test_duplicate_start_is_409(post: Post, lot: str) -> None:
    assert post("/api/v1/process/start", start_body(lot, "PROC-001")).status_code == 200
    again = post("/api/v1/process/start", start_body(lot, "PROC-001"))
    assert again.status_code == 409 and again.json()["error_code"] == "DUPLICATE_START"
    assert again.json()["data"]["work_order_id"].startswith("WO-")


def test_idempotency_key_replays_the_first_answer(post: Post, lot: str, db: psycopg.Connection) -> None:
    key = str(uuid.uuid4())
    first = post("/api/v1/process/start", start_body(lot, "PROC-001"), headers={"Idempotency-Key": key})
    second = post("/api/v1/process/start", start_body(lot, "PROC-001"), headers={"Idempotency-Key": key})
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    count = db.execute(
        "SELECT count(*) FROM process_runs r JOIN lots l ON l.id = r.lot_id WHERE l.lot_number = %s", (lot,)
    ).fetchone()
    assert count == (1,)


def test_invalid_process_sequence_for_unknown_process_and_closed_lot(post: Post, lot: str) -> None:
    unknown = post("/api/v1/process/start", {**start_body(lot, "PROC-001"), "process_id": "PROC-009"})
    assert unknown.status_code == 400 and unknown.json()["error_code"] == "INVALID_PROCESS_SEQUENCE"
    closed = post(f"/api/v1/lots/{lot}/close", {"reason": "취소"})
    assert closed.status_code == 200
    refused = post("/api/v1/process/start", start_body(lot, "PROC-001"))
    assert refused.status_code == 400 and refused.json()["error_code"] == "INVALID_PROCESS_SEQUENCE"


@pytest.mark.parametrize("missing", ["lot_number", "process_id", "process_name", "worker_id", "start_time"])
def test_every_field_is_required(post: Post, lot: str, missing: str) -> None:
    body = start_body(lot, "PROC-001")
    del body[missing]
    response = post("/api/v1/process/start", body)
    assert response.status_code == 422
    assert response.json()["error_code"] == "INVALID_REQUEST"
    assert any(missing in line for line in response.json()["data"]["errors"])


def test_start_time_needs_an_offset_and_name_must_match(post: Post, lot: str) -> None:
    naive = post("/api/v1/process/start", {**start_body(lot, "PROC-001"), "start_time": "2025-01-10T09:00:00"})
    assert naive.status_code == 422
    wrong_name = post("/api/v1/process/start", {**start_body(lot, "PROC-001"), "process_name": "센서 검사"})
    assert wrong_name.status_code == 422 and wrong_name.json()["error_code"] == "INVALID_REQUEST"


def test_english_messages_on_request(post: Post) -> None:
    response = post(
        "/api/v1/process/start", start_body("WF-KR-000101D-998", "PROC-001"), headers={"Accept-Language": "en"}
    )
    assert response.json()["message"] == "LOT number does not exist"
