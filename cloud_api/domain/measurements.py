"""Turn a process's completion data into one row per measured value (the time-series table)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mes_contracts.process_data import PerformanceTestData, ProcessDataBase, SensorTestData

# Names a performance-test station may use for measured values beside the spec's fields.
PERFORMANCE_MEASURES: tuple[tuple[str, str, str], ...] = (
    ("measured_force", "force", "kgf"),
    ("measured_displacement", "displacement", "mm"),
    ("measured_temperature", "temperature", "°C"),
)


@dataclass(frozen=True, slots=True)
class Measurement:
    time: datetime
    characteristic: str
    value: float | None
    unit: str | None
    result: str | None
    test_point_id: str | None = None
    target: float | None = None
    tolerance: float | None = None

    @property
    def lower_limit(self) -> float | None:
        return None if self.target is None or self.tolerance is None else self.target - self.tolerance

    @property
    def upper_limit(self) -> float | None:
        return None if self.target is None or self.tolerance is None else self.target + self.tolerance


def extract_measurements(data: ProcessDataBase, completed_at: datetime) -> list[Measurement]:
    if isinstance(data, SensorTestData):
        return _sensor_measurements(data, completed_at)
    if isinstance(data, PerformanceTestData):
        return _performance_measurements(data)
    return []


def _sensor_measurements(data: SensorTestData, at: datetime) -> list[Measurement]:
    temp, tof = data.temp_sensor, data.tof_sensor
    return [
        Measurement(
            at, "temperature", temp.measured_temp, "°C", temp.result, "TEMP_SENSOR", temp.target_temp, temp.tolerance
        ),
        Measurement(at, "i2c_communication", 1.0 if tof.i2c_communication else 0.0, None, tof.result, "TOF_SENSOR"),
    ]


def _performance_measurements(data: PerformanceTestData) -> list[Measurement]:
    rows: list[Measurement] = []
    for point in data.test_results:
        extra = point.model_extra or {}
        measured = [(key, name, unit) for key, name, unit in PERFORMANCE_MEASURES if _is_number(extra.get(key))]
        if not any(name == "force" for _, name, _ in measured):
            # The spec's example carries only the verdict; keep it so QA sees every test point.
            rows.append(
                Measurement(
                    data.tested_at,
                    "force",
                    None,
                    "kgf",
                    point.result,
                    point.test_point_id,
                    point.spec.target_force,
                    point.spec.tolerance,
                )
            )
        for key, name, unit in measured:
            is_force = name == "force"
            rows.append(
                Measurement(
                    data.tested_at,
                    name,
                    float(extra[key]),
                    unit,
                    point.result if is_force else None,
                    point.test_point_id,
                    point.spec.target_force if is_force else None,
                    point.spec.tolerance if is_force else None,
                )
            )
    return rows


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
