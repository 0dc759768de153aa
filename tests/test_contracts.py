"""The shared contract: route, numbering, process data, file names, topics and envelope (pure tests)."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from mes_contracts.completion import CompletionRecord, completion_file_name, parse_completion_file_name
from mes_contracts.envelope import Envelope, MessageType, new_message_id
from mes_contracts.numbering import (
    Shift,
    format_lot_number,
    format_serial_number,
    format_work_order_id,
    parse_lot_number,
    parse_serial_number,
    production_date,
)
from mes_contracts.process_data import parse_process_data
from mes_contracts.route import ROUTE, find_step, next_step, previous_step
from mes_contracts.start import StartRequest
from mes_contracts.topics import Branch, StationAddress, ingestor_subscriptions, parse_topic

GOLDEN = Path(__file__).parent / "golden"


def test_route_is_the_eight_processes_in_order() -> None:
    assert [s.process_id for s in ROUTE] == [f"PROC-00{i}" for i in range(1, 9)]
    assert [s.name_ko for s in ROUTE] == [
        "레이저 마킹",
        "LMA 조립",
        "센서 검사",
        "펌웨어 업로드",
        "로봇 조립",
        "성능검사",
        "라벨 프린팅",
        "포장 + 외관검사",
    ]
    assert previous_step("PROC-001") is None and next_step("PROC-008") is None
    assert previous_step("PROC-003") == find_step("PROC-002")


def test_lot_and_serial_numbers_round_trip() -> None:
    assert format_lot_number(date(2025, 11, 10), Shift.DAY, 1) == "WF-KR-251110D-001"
    parsed = parse_lot_number("WF-KR-251110N-042")
    assert (parsed.production_date, parsed.shift, parsed.sequence) == (date(2025, 11, 10), Shift.NIGHT, 42)
    assert str(parsed) == "WF-KR-251110N-042"
    assert format_serial_number("WF-KR-251110D-001", 1) == "WF-KR-251110D-001-0001"
    assert parse_serial_number("WF-KR-251110D-001-0100") == ("WF-KR-251110D-001", 100)
    assert format_work_order_id(date(2025, 1, 10), 1) == "WO-20250110-001"
    for bad in ("WF-KR-251110X-001", "WF-KR-251310D-001", "WF-KR-251110D-01", "wf-kr-251110d-001"):
        with pytest.raises(ValueError):
            parse_lot_number(bad)
    with pytest.raises(ValueError):
        format_lot_number(date(2025, 1, 1), "D", 1000)


def test_night_shift_after_midnight_belongs_to_the_previous_day() -> None:
    assert production_date(datetime(2025, 1, 11, 2, 0), "N", 8) == date(2025, 1, 10)
    assert production_date(datetime(2025, 1, 11, 2, 0), "D", 8) == date(2025, 1, 11)
    assert production_date(datetime(2025, 1, 10, 21, 0), "N", 8) == date(2025, 1, 10)


def test_spec_examples_validate_for_every_process() -> None:
    samples = json.loads((GOLDEN / "process_data.json").read_text())
    for process_id, data in samples.items():
        assert parse_process_data(process_id, data).outcome() == "PASS", process_id
    assert StartRequest.model_validate_json((GOLDEN / "start_request.json").read_text()).worker_id == "W001"
    record = CompletionRecord.model_validate_json((GOLDEN / "completion_proc003.json").read_text())
    assert record.typed_data().outcome() == "PASS"


def test_required_fields_are_enforced_and_extras_kept() -> None:
    with pytest.raises(ValidationError) as error:
        parse_process_data(
            "PROC-003",
            {
                "temp_sensor": {"target_temp": 60, "tolerance": 1, "result": "PASS"},
                "tof_sensor": {"i2c_communication": True, "result": "PASS"},
                "overall_result": "PASS",
            },
        )
    assert "measured_temp" in str(error.value)
    data = parse_process_data("PROC-002", {"sma_spring_lot": "S1", "busbar_lot": "B1", "cable_lot": "C9", "note": "x"})
    assert data.component_lots() == {"sma_spring": "S1", "busbar": "B1", "cable": "C9"}
    assert data.model_extra == {"cable_lot": "C9", "note": "x"}
    with pytest.raises(ValidationError):
        parse_process_data("PROC-001", {"lot_number_engraved": "WF-KR-251110D-001", "marking_result": "OK"})


def test_failures_name_their_cause() -> None:
    samples = json.loads((GOLDEN / "process_data.json").read_text())
    perf = samples["PROC-006"]
    perf["test_results"][2]["result"] = "FAIL"
    perf["overall_result"] = "FAIL"
    parsed = parse_process_data("PROC-006", perf)
    assert parsed.outcome() == "FAIL" and parsed.failure_reasons() == ["T52_P200"]
    label = parse_process_data("PROC-007", {**samples["PROC-007"], "barcode_verified": False})
    assert label.failure_reasons() == ["barcode_verified"]


def test_completion_record_checks_name_and_times() -> None:
    body = json.loads((GOLDEN / "completion_proc003.json").read_text())
    with pytest.raises(ValidationError):
        CompletionRecord.model_validate({**body, "process_name": "레이저 마킹"})
    with pytest.raises(ValidationError):
        CompletionRecord.model_validate({**body, "complete_time": "2025-01-10T08:00:00+09:00"})
    # Without an offset: factory time by MES_NAIVE_TIMESTAMPS (default assume_local; tests/test_contract_limits.py).
    naive = CompletionRecord.model_validate({**body, "start_time": "2025-01-10T09:00:00"})
    assert naive.assumed_timezone == "Asia/Seoul"


def test_completion_file_names() -> None:
    parsed = parse_completion_file_name("WF-KR-251110D-001_PROC-003_20250110090000.json")
    assert parsed is not None and parsed.process_id == "PROC-003" and parsed.stamp == datetime(2025, 1, 10, 9)
    assert (
        completion_file_name("WF-KR-251110D-001", "PROC-003", datetime(2025, 1, 10, 9))
        == "WF-KR-251110D-001_PROC-003_20250110090000.json"
    )
    for bad in (
        "WF-KR-251110D-001_PROC-003_20250110090000.txt",
        "WF-KR-251110D-001_PROC-009_20250110090000.json",
        "WF-KR-251110D-001_PROC-003_20251310090000.json",
        "result.json",
    ):
        assert parse_completion_file_name(bad) is None


def test_topics_have_a_version_root_and_no_business_keys() -> None:
    address = StationAddress("KR", "L1", "st03")
    assert address.request("process-start") == "mes/v1/KR/L1/st03/req/process-start"  # type: ignore[arg-type]
    assert address.reply() == "mes/v1/KR/L1/st03/rpl"
    assert address.state() == "mes/v1/KR/L1/st03/state"
    parsed = parse_topic("mes/v1/KR/L1/st03/evt/process-completed")
    assert parsed.address == address and parsed.branch is Branch.EVENT and parsed.name == "process-completed"
    assert ingestor_subscriptions() == [
        "$share/mes-ingestor/mes/v1/+/+/+/req/#",
        "$share/mes-ingestor/mes/v1/+/+/+/evt/#",
    ]
    with pytest.raises(ValueError):
        StationAddress("KR", "L1", "st/03")
    with pytest.raises(ValueError):
        parse_topic("other/v1/KR/L1/st03/evt/x")


def test_envelope_golden_sample_and_message_ids() -> None:
    raw = (GOLDEN / "envelope_completed.json").read_bytes()
    envelope = Envelope.from_bytes(raw)
    assert envelope.type is MessageType.PROCESS_COMPLETED and envelope.seq == 42
    assert Envelope.from_bytes(envelope.to_bytes()) == envelope
    ids = [new_message_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    parsed = [uuid.UUID(i) for i in ids]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    assert [u.int >> 80 for u in parsed] == sorted(u.int >> 80 for u in parsed)


def test_completion_event_payload_and_case_insensitive_extension() -> None:
    from mes_contracts.completion import CompletionEvent

    envelope = Envelope.from_bytes((GOLDEN / "envelope_completed.json").read_bytes())
    event = CompletionEvent.model_validate(envelope.payload)
    assert event.file_name == "WF-KR-251110D-001_PROC-003_20250110091500.json" and len(event.sha256 or "") == 64
    with pytest.raises(ValidationError):
        CompletionEvent.model_validate({**envelope.payload, "sha256": "not-a-hash"})
    assert parse_completion_file_name("WF-KR-251110D-001_PROC-003_20250110090000.JSON") is not None


def test_work_order_numbers_keep_growing_past_999() -> None:
    assert format_work_order_id(date(2025, 1, 10), 1000) == "WO-20250110-1000"
