"""Domain rules without I/O: start sequencing, LOT life cycle, measurement extraction."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cloud_api.domain.errors import DomainError
from cloud_api.domain.lots import LotStatus, can_transition, status_after_completion, status_after_start
from cloud_api.domain.measurements import extract_measurements
from cloud_api.domain.sequencing import RunSnapshot, check_start_allowed, resolve_step
from mes_contracts.errors import ErrorCode
from mes_contracts.process_data import parse_process_data
from mes_contracts.route import get_step

DONE = RunSnapshot("COMPLETED", "WO-1", "t")
STARTED = RunSnapshot("STARTED", "WO-2", "t")


def _code(**kwargs: object) -> ErrorCode | None:
    try:
        check_start_allowed("LOT", **kwargs)  # type: ignore[arg-type]
    except DomainError as error:
        return error.code
    return None


def test_first_process_needs_nothing_before_it() -> None:
    assert _code(lot_status=LotStatus.CREATED, step=get_step("PROC-001"), runs={}) is None


def test_previous_must_be_completed_not_just_started() -> None:
    step = get_step("PROC-003")
    assert (
        _code(lot_status=LotStatus.IN_PROGRESS, step=step, runs={"PROC-001": DONE, "PROC-002": STARTED})
        is ErrorCode.PREVIOUS_PROCESS_NOT_COMPLETED
    )
    assert _code(lot_status=LotStatus.IN_PROGRESS, step=step, runs={"PROC-001": DONE, "PROC-002": DONE}) is None


def test_duplicate_and_terminal_states() -> None:
    assert (
        _code(lot_status=LotStatus.IN_PROGRESS, step=get_step("PROC-001"), runs={"PROC-001": STARTED})
        is ErrorCode.DUPLICATE_START
    )
    for status in (LotStatus.COMPLETED, LotStatus.CLOSED):
        assert _code(lot_status=status, step=get_step("PROC-001"), runs={}) is ErrorCode.INVALID_PROCESS_SEQUENCE


def test_error_data_carries_the_spec_fields() -> None:
    with pytest.raises(DomainError) as caught:
        check_start_allowed("WF-KR-251110D-001", LotStatus.IN_PROGRESS, get_step("PROC-003"), {"PROC-001": DONE})
    assert caught.value.data == {
        "lot_number": "WF-KR-251110D-001",
        "current_process": "센서 검사",
        "previous_process": "LMA 조립",
        "required_action": "LMA 조립 공정을 먼저 완료해주세요",
    }
    assert caught.value.http_status == 400


def test_resolve_step_rejects_unknown_ids_and_wrong_names() -> None:
    with pytest.raises(DomainError) as unknown:
        resolve_step("PROC-010", "x", "LOT", "ko")
    assert unknown.value.code is ErrorCode.INVALID_PROCESS_SEQUENCE
    with pytest.raises(DomainError) as wrong:
        resolve_step("PROC-001", "센서 검사", "LOT", "ko")
    assert wrong.value.code is ErrorCode.INVALID_REQUEST
    assert resolve_step("PROC-001", "Laser marking", "LOT", "en").process_id == "PROC-001"


def test_lot_life_cycle() -> None:
    assert status_after_start(LotStatus.CREATED) is LotStatus.IN_PROGRESS
    assert status_after_start(LotStatus.IN_PROGRESS) is None
    assert status_after_completion(LotStatus.IN_PROGRESS, "PROC-008") is LotStatus.COMPLETED
    assert status_after_completion(LotStatus.IN_PROGRESS, "PROC-007") is None
    assert can_transition(LotStatus.COMPLETED, LotStatus.CLOSED)
    assert not can_transition(LotStatus.CLOSED, LotStatus.IN_PROGRESS)


def test_measurements_of_sensor_and_performance_tests() -> None:
    samples = json.loads((Path(__file__).parent / "golden" / "process_data.json").read_text())
    at = datetime(2025, 1, 10, tzinfo=UTC)
    sensor = extract_measurements(parse_process_data("PROC-003", samples["PROC-003"]), at)
    temperature = next(m for m in sensor if m.characteristic == "temperature")
    assert (temperature.value, temperature.lower_limit, temperature.upper_limit) == (60.2, 59.0, 61.0)
    perf = samples["PROC-006"]
    perf["test_results"][0]["measured_force"] = 12.9
    perf["test_results"][0]["measured_displacement"] = 170.2
    rows = extract_measurements(parse_process_data("PROC-006", perf), at)
    first = [m for m in rows if m.test_point_id == "T38_P170"]
    assert {(m.characteristic, m.value) for m in first} == {("force", 12.9), ("displacement", 170.2)}
    # Points without measured values still keep their verdict and limits.
    last = [m for m in rows if m.test_point_id == "T52_P200"]
    assert [(m.characteristic, m.value, m.target, m.result) for m in last] == [("force", None, 16.0, "PASS")]
    assert extract_measurements(parse_process_data("PROC-001", samples["PROC-001"]), at) == []
