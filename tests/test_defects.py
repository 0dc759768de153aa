"""Defect list helpers (issue 13 point 3), pure: the one-line cause and the time window. The API is tested with
a real line in tests/test_trace_api.py (TC-TRACE-004)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cloud_api.adapters.database import Database
from cloud_api.domain.errors import DomainError
from cloud_api.services.defects import describe, window
from cloud_api.services.trace_models import DefectOut

SEOUL = ZoneInfo("Asia/Seoul")
NOW = datetime(2026, 12, 5, 3, 0, tzinfo=UTC)


def _db() -> Database:
    return Database(engine=AsyncEngine.__new__(AsyncEngine), zone=SEOUL, clock=lambda: NOW)


def _defect(reasons: list[str], measurements: list[dict]) -> DefectOut:
    return DefectOut.model_validate(
        {
            "result_id": 1,
            "lot_number": "WF-KR-261205D-001",
            "serial_number": None,
            "process_id": "PROC-003",
            "process_name": "센서 검사",
            "worker_id": "W003",
            "start_worker_id": "W003",
            "station": "KR/L1/st03",
            "complete_time": "2026-12-05T09:00:00+09:00",
            "failure_reasons": reasons,
            "measurements": measurements,
        }
    )


def _m(point: str, characteristic: str, value: float | None, target: float, tol: float, unit: str) -> dict:
    return {
        "time": "2026-12-05T09:00:00+09:00",
        "test_point_id": point,
        "characteristic": characteristic,
        "value": value,
        "unit": unit,
        "target": target,
        "tolerance": tol,
        "lower_limit": target - tol,
        "upper_limit": target + tol,
        "result": "FAIL",
        "out_of_limits": value is not None,
    }


def test_cause_names_the_value_and_its_limits() -> None:
    defect = _defect(["temp_sensor"], [_m("TEMP_SENSOR", "temperature", 62.5, 60, 1, "°C")])
    assert describe(defect) == "TEMP_SENSOR: temperature 62.5 °C (59–61 °C, target 60 ± 1)"


def test_cause_of_a_verdict_without_value_and_of_a_check_without_measurement() -> None:
    performance = _defect(["T52_P200"], [_m("T52_P200", "force", None, 12, 0.5, "kgf")])
    assert describe(performance) == "T52_P200: force FAIL (11.5–12.5 kgf, target 12 ± 0.5)"
    assert describe(_defect(["inspection_result"], [])) == "inspection_result"
    assert describe(_defect([], [])) == "FAIL"


def test_window_dates_are_whole_factory_days() -> None:
    lower, upper = window(_db(), date(2026, 12, 1), date(2026, 12, 5))
    assert lower == datetime(2026, 12, 1, tzinfo=SEOUL)
    assert upper == datetime(2026, 12, 6, tzinfo=SEOUL)  # `to` inclusive


def test_window_defaults_to_the_last_7_days_and_refuses_nonsense() -> None:
    assert window(_db(), None, None) == (NOW - timedelta(days=7), NOW)
    naive = window(_db(), datetime(2026, 12, 5, 8, 0), None)[0]
    assert naive == datetime(2026, 12, 5, 8, 0, tzinfo=SEOUL)  # a time without offset is factory time
    with pytest.raises(DomainError):
        window(_db(), date(2026, 12, 5), date(2026, 12, 1))
    with pytest.raises(DomainError):
        window(_db(), date(2024, 1, 1), date(2026, 1, 1))
