"""Line simulator payloads: valid §3.4.2 records, consistent verdicts, broken samples that fail as labelled."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta

import pytest
from pydantic import ValidationError

from line_simulator.clock import KST
from line_simulator.payloads import bad_files, completion_record, other_lot_number, render, start_request
from line_simulator.process_values import FAILABLE_PROCESSES, GENERATORS, PERFORMANCE_POINTS
from mes_contracts.completion import CompletionRecord, parse_completion_file_name
from mes_contracts.errors import ErrorCode
from mes_contracts.process_data import PerformanceTestData, SensorTestData
from mes_contracts.route import ROUTE, ProcessStep, get_step, process_ids
from mes_contracts.start import StartRequest

LOT = "WF-KR-251110D-001"
START = datetime(2025, 1, 10, 9, 0, 0, tzinfo=KST)
END = START + timedelta(minutes=15)
ALL = process_ids()


def record(process_id: str, seed: int = 7, fail: bool = False, **overrides: object) -> dict:
    return completion_record(process_id, LOT, "W003", START, END, random.Random(seed), fail, **overrides)


def test_generators_cover_the_route() -> None:
    assert list(GENERATORS) == ALL
    assert FAILABLE_PROCESSES.issubset(ALL)


@pytest.mark.parametrize("process_id", ALL)
@pytest.mark.parametrize("seed", range(20))
def test_passing_record_validates_and_passes(process_id: str, seed: int) -> None:
    raw = record(process_id, seed)
    parsed = CompletionRecord.model_validate(raw)
    assert parsed.process_name == get_step(process_id).name_ko
    assert parsed.typed_data().outcome() == "PASS"
    assert parsed.typed_data().failure_reasons() == []
    assert raw["start_time"] == "2025-01-10T09:00:00+09:00"
    assert raw["complete_time"] == "2025-01-10T09:15:00+09:00"
    assert CompletionRecord.model_validate_json(render(raw)) == parsed


@pytest.mark.parametrize("process_id", sorted(FAILABLE_PROCESSES))
@pytest.mark.parametrize("seed", range(30))
def test_failing_record_fails_consistently(process_id: str, seed: int) -> None:
    raw = record(process_id, seed, fail=True)
    typed = CompletionRecord.model_validate(raw).typed_data()
    assert typed.outcome() == "FAIL"
    assert typed.failure_reasons()
    text = json.dumps(raw["process_data"])
    assert "FAIL" in text or "false" in text


@pytest.mark.parametrize("process_id", sorted(set(ALL) - FAILABLE_PROCESSES))
def test_processes_without_a_verdict_always_pass(process_id: str) -> None:
    assert CompletionRecord.model_validate(record(process_id, fail=True)).typed_data().outcome() == "PASS"


@pytest.mark.parametrize("fail", [False, True])
@pytest.mark.parametrize("seed", range(40))
def test_sensor_results_follow_the_measurements(fail: bool, seed: int) -> None:
    data = CompletionRecord.model_validate(record("PROC-003", seed, fail)).typed_data()
    assert isinstance(data, SensorTestData)
    temp = data.temp_sensor
    assert (temp.target_temp, temp.tolerance) == (60.0, 1.0)
    inside = abs(temp.measured_temp - temp.target_temp) <= temp.tolerance
    assert temp.result == ("PASS" if inside else "FAIL")
    if not fail:
        assert abs(temp.measured_temp - 60.0) <= 0.4 + 1e-9
    elif temp.result == "FAIL":
        assert abs(temp.measured_temp - 60.0) > 1.0
    assert data.tof_sensor.result == ("PASS" if data.tof_sensor.i2c_communication else "FAIL")
    both = temp.result == "PASS" and data.tof_sensor.result == "PASS"
    assert data.overall_result == ("PASS" if both else "FAIL")


@pytest.mark.parametrize("fail", [False, True])
@pytest.mark.parametrize("seed", range(40))
def test_performance_points_are_consistent(fail: bool, seed: int) -> None:
    raw = record("PROC-006", seed, fail)
    data = CompletionRecord.model_validate(raw).typed_data()
    assert isinstance(data, PerformanceTestData)
    assert [(p.test_point_id, p.spec.target_force) for p in data.test_results] == list(PERFORMANCE_POINTS)
    for point, raw_point in zip(data.test_results, raw["process_data"]["test_results"], strict=True):
        temperature, displacement = point.condition()
        force = raw_point["measured_force"]
        assert point.spec.tolerance == 1.0
        assert point.result == ("PASS" if abs(force - point.spec.target_force) <= 1.0 else "FAIL")
        assert abs(raw_point["measured_displacement"] - displacement) <= 0.3 + 1e-9
        assert abs(raw_point["measured_temperature"] - temperature) <= 0.3 + 1e-9
    assert data.overall_result == ("FAIL" if any(p.result == "FAIL" for p in data.test_results) else "PASS")
    assert 40 <= data.test_duration_seconds <= 50
    assert START <= data.tested_at <= END


def test_component_lots_and_fixed_values() -> None:
    assembly = record("PROC-002")["process_data"]
    assert assembly["sma_spring_lot"].startswith("SPRING-") and len(assembly["sma_spring_lot"]) == 17
    assert assembly["busbar_lot"].startswith("BUSBAR-") and assembly["busbar_lot"][7:].isdigit()
    assert record("PROC-001")["process_data"] == {"lot_number_engraved": LOT, "marking_result": "SUCCESS"}
    assert record("PROC-004")["process_data"]["firmware_version"] == "v1.2.3"
    label = record("PROC-007")["process_data"]
    assert label["printer_id"] == "PRINTER-07" and label["label_printed"] and label["barcode_verified"]
    assert label["print_time"].endswith("+09:00")


def test_overrides_replace_top_level_and_merge_process_data() -> None:
    raw = record(
        "PROC-004",
        serial_number=f"{LOT}-0001",
        process_data={"firmware_version": "v1.3.0"},
        process_name="Firmware upload",
        received_at=END + timedelta(seconds=5),
    )
    assert raw["serial_number"] == f"{LOT}-0001"
    assert raw["process_data"] == {"firmware_version": "v1.3.0", "upload_result": "SUCCESS"}
    assert raw["process_name"] == "Firmware upload"
    assert raw["received_at"] == "2025-01-10T09:15:05+09:00"
    CompletionRecord.model_validate(raw)


def test_same_seed_same_record_different_seed_different_record() -> None:
    for process_id in ("PROC-002", "PROC-003", "PROC-006"):
        assert render(record(process_id, 11)) == render(record(process_id, 11))
        assert render(record(process_id, 11, True)) == render(record(process_id, 11, True))
    assert record("PROC-006", 11) != record("PROC-006", 12)


def test_naive_times_are_korean_local_time() -> None:
    raw = completion_record(
        "PROC-008", LOT, "W008", datetime(2025, 1, 10, 9), datetime(2025, 1, 10, 10), random.Random(1)
    )
    assert raw["start_time"] == "2025-01-10T09:00:00+09:00"


@pytest.mark.parametrize("step", ROUTE, ids=lambda s: s.process_id)
def test_start_request_is_the_spec_body(step: ProcessStep) -> None:
    body = start_request(step.process_id, LOT, "W001", START)
    assert body == {
        "lot_number": LOT,
        "process_id": step.process_id,
        "process_name": step.name_ko,
        "worker_id": "W001",
        "start_time": "2025-01-10T09:00:00+09:00",
    }
    StartRequest.model_validate(body)


def _error_of(name: str, data: bytes) -> str | None:
    """What a correct gateway must answer for this file: the error code, or None when it is acceptable."""
    parsed = parse_completion_file_name(name)
    if parsed is None:
        return ErrorCode.INVALID_FILE_NAME
    try:
        raw = json.loads(data.decode("utf-8"))
    except ValueError:
        return ErrorCode.INVALID_JSON
    try:
        parsed_record = CompletionRecord.model_validate(raw)
    except ValidationError:
        return ErrorCode.INVALID_PROCESS_DATA
    if (parsed_record.lot_number, parsed_record.process_id) != (parsed.lot_number, parsed.process_id):
        return ErrorCode.FILE_CONTENT_MISMATCH
    return None


@pytest.mark.parametrize("process_id", ALL)
def test_bad_files_fail_as_labelled(process_id: str) -> None:
    samples = bad_files(LOT, process_id, datetime(2025, 1, 10, 9, 30))
    assert {code for _, _, code in samples} == {
        ErrorCode.INVALID_JSON,
        ErrorCode.INVALID_PROCESS_DATA,
        ErrorCode.INVALID_FILE_NAME,
        ErrorCode.FILE_CONTENT_MISMATCH,
    }
    names = [name for name, _, _ in samples]
    assert len(set(names)) == len(names)
    assert "result_final.json" in names
    for name, data, expected in samples:
        assert _error_of(name, data) == expected, name
        data.decode("utf-8")  # always valid UTF-8, so the failure is the one labelled
        parsed = parse_completion_file_name(name)
        if parsed is not None:
            assert (parsed.lot_number, parsed.process_id) == (LOT, process_id)
            assert parsed.stamp > datetime(2025, 1, 10, 9, 30)


def test_sensor_sample_misses_the_measured_temperature() -> None:
    samples = {code: data for _, data, code in bad_files(LOT, "PROC-003", datetime(2025, 1, 10, 9, 30))}
    raw = json.loads(samples[ErrorCode.INVALID_PROCESS_DATA])
    assert "measured_temp" not in raw["process_data"]["temp_sensor"]
    with pytest.raises(ValidationError, match="measured_temp"):
        CompletionRecord.model_validate(raw)


def test_bad_files_are_deterministic_and_mismatch_names_another_lot() -> None:
    stamp = datetime(2025, 1, 10, 9, 30, tzinfo=KST)
    assert bad_files(LOT, "PROC-006", stamp) == bad_files(LOT, "PROC-006", stamp)
    assert other_lot_number(LOT) == "WF-KR-251110D-999"
    assert other_lot_number("WF-KR-251110N-999") == "WF-KR-251110N-998"


def test_render_keeps_korean_readable() -> None:
    text = render(record("PROC-003")).decode("utf-8")
    assert "센서 검사" in text and "\\u" not in text
    assert text.startswith('{\n  "lot_number"')
