"""Edge gateway: a ready completion file's name and bytes → publishable completion or error code."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from edge_gateway.validation import Completion, Rejection, check_completion, decode_json, reply_rejection
from mes_contracts.errors import error_message

NAME = "WF-KR-251110D-001_PROC-003_20250110090000.json"


def record(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "lot_number": "WF-KR-251110D-001",
        "process_id": "PROC-003",
        "process_name": "센서 검사",
        "worker_id": "W001",
        "start_time": "2025-01-10T09:00:00+09:00",
        "complete_time": "2025-01-10T09:05:00+09:00",
        "process_data": {
            "temp_sensor": {"measured_temp": 60.2, "target_temp": 60.0, "tolerance": 1.0, "result": "PASS"},
            "tof_sensor": {"i2c_communication": True, "result": "PASS"},
            "overall_result": "PASS",
        },
        "serial_number": None,
        "vendor_note": "kept as written",
    }
    body.update(changes)
    return body


def encode(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def test_valid_file_keeps_the_record_exactly_and_hashes_the_bytes() -> None:
    data = encode(record())
    checked = check_completion(NAME, data)
    assert isinstance(checked, Completion)
    assert checked.record == record()  # unknown fields and nulls kept, nothing normalised
    assert checked.sha256 == hashlib.sha256(data).hexdigest()
    assert (checked.parts.lot_number, checked.parts.process_id) == ("WF-KR-251110D-001", "PROC-003")


def test_utf8_bom_is_accepted_and_hashed_as_written() -> None:
    data = b"\xef\xbb\xbf" + encode(record())
    checked = check_completion(NAME, data)
    assert isinstance(checked, Completion)
    assert checked.sha256 == hashlib.sha256(data).hexdigest()


def test_already_parsed_body_is_used() -> None:
    checked = check_completion(NAME, b"ignored", record())
    assert isinstance(checked, Completion)


def _rejected(name: str, data: bytes) -> Rejection:
    checked = check_completion(name, data)
    assert isinstance(checked, Rejection), checked
    assert checked.message == error_message(checked.code)  # type: ignore[arg-type]
    return checked


@pytest.mark.parametrize(
    "name",
    [
        "result_final.json",
        "WF-KR-251110D-001_PROC-009_20250110090000.json",  # no such process
        "WF-KR-251110D-001_PROC-003_20251310090000.json",  # month 13
        "WF-KR-251110D-001_PROC-003_2025011009000.json",  # short stamp
    ],
)
def test_bad_names_are_invalid_file_name_before_anything_else(name: str) -> None:
    rejection = _rejected(name, b"{not json")
    assert rejection.code == "INVALID_FILE_NAME"
    assert rejection.details["file_name"] == name


@pytest.mark.parametrize(
    "data",
    [
        b"{not json",
        b"",
        '{"lot_number": "가"}'.encode("cp949"),  # not UTF-8
        b'{"value": NaN}',  # not JSON (RFC 8259)
        b'{"value": Infinity}',
    ],
)
def test_undecodable_bytes_are_invalid_json(data: bytes) -> None:
    rejection = _rejected(NAME, data)
    assert rejection.code == "INVALID_JSON"
    assert rejection.details["error"]


def test_missing_process_data_field_is_invalid_process_data_with_the_field() -> None:
    body = record()
    del body["process_data"]["temp_sensor"]["measured_temp"]
    rejection = _rejected(NAME, encode(body))
    assert rejection.code == "INVALID_PROCESS_DATA"
    assert any("measured_temp" in line for line in rejection.details["errors"])


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"worker_id": ""}, "worker_id"),
        ({"start_time": "2025-01-10T25:00:00+09:00"}, "start_time"),  # no such hour (no offset: test_contract_limits)
        ({"complete_time": "2025-01-10T08:00:00+09:00"}, "complete_time is before start_time"),
        ({"process_name": "성능검사"}, "process_name"),
    ],
)
def test_body_errors_are_invalid_process_data(changes: dict[str, Any], needle: str) -> None:
    rejection = _rejected(NAME, encode(record(**changes)))
    assert rejection.code == "INVALID_PROCESS_DATA"
    assert any(needle in line for line in rejection.details["errors"])


def test_json_that_is_not_an_object_is_invalid_process_data() -> None:
    assert _rejected(NAME, b"[1, 2]").code == "INVALID_PROCESS_DATA"


@pytest.mark.parametrize(
    "changes",
    [
        {"lot_number": "WF-KR-251110D-002"},
        {
            "process_id": "PROC-004",
            "process_name": "펌웨어 업로드",
            "process_data": {"firmware_version": "v1", "upload_result": "SUCCESS"},
        },
    ],
)
def test_name_and_body_must_agree(changes: dict[str, Any]) -> None:
    rejection = _rejected(NAME, encode(record(**changes)))
    assert rejection.code == "FILE_CONTENT_MISMATCH"
    assert rejection.details["file_name"] == {"lot_number": "WF-KR-251110D-001", "process_id": "PROC-003"}


def test_decode_json_refuses_constants_but_reads_bom() -> None:
    assert decode_json(b"\xef\xbb\xbf{}") == {}
    with pytest.raises(ValueError):
        decode_json(b"[-Infinity]")


def test_reply_rejection_takes_code_message_and_data_from_the_body() -> None:
    body = {
        "status": "error",
        "message": "LOT 번호가 존재하지 않습니다",
        "error_code": "LOT_NOT_FOUND",
        "data": {"lot_number": "WF-KR-251110D-001"},
    }
    rejection = reply_rejection(body, 404, "mid")
    assert (rejection.code, rejection.message) == ("LOT_NOT_FOUND", "LOT 번호가 존재하지 않습니다")
    assert rejection.details == {"http_status": 404, "message_id": "mid", "data": body["data"]}
    fallback = reply_rejection({"status": "error"}, 500, "mid")
    assert fallback.code == "INTERNAL_ERROR" and fallback.message
