"""Per-process completion data (spec §3.4.2): required fields enforced, unknown extra fields kept.

Everything here must be storable: strings that land in a column are bounded by it (component LOTs 100, their
kind 50, test points 50, printer ids 50, firmware versions 50), and no string, key or number may be something
PostgreSQL refuses (mes_contracts/text_rules.py). Times without a UTC offset follow mes_contracts/timestamps.py.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mes_contracts.numbering import LOT_PATTERN
from mes_contracts.text_rules import PlainText, check_identifier, check_json_tree
from mes_contracts.timestamps import FactoryDatetime

PassFail = Literal["PASS", "FAIL"]
SuccessFail = Literal["SUCCESS", "FAIL"]
TEST_POINT_RE = re.compile(r"^T(?P<temp>\d+(?:\.\d+)?)_P(?P<pos>\d+(?:\.\d+)?)$")
COMPONENT_LOT_CHARS = 100  # component_lots.component_lot
COMPONENT_KIND_CHARS = 50  # component_lots.component_kind


class ProcessDataBase(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        check_json_tree(data)
        return data

    def outcome(self) -> PassFail:
        return "FAIL" if self.failure_reasons() else "PASS"

    def failure_reasons(self) -> list[str]:
        """Names of the checks that failed; empty when the process passed."""
        return []

    def component_lots(self) -> dict[str, str]:
        return {}


class LaserMarkingData(ProcessDataBase):
    lot_number_engraved: str = Field(pattern=rf"^{LOT_PATTERN}$")
    marking_result: SuccessFail

    def failure_reasons(self) -> list[str]:
        return ["marking_result"] if self.marking_result == "FAIL" else []


class LmaAssemblyData(ProcessDataBase):
    sma_spring_lot: PlainText = Field(min_length=1, max_length=COMPONENT_LOT_CHARS)
    busbar_lot: PlainText = Field(min_length=1, max_length=COMPONENT_LOT_CHARS)

    @model_validator(mode="after")
    def _extra_lots_fit(self) -> LmaAssemblyData:
        """Extra `*_lot` strings are stored as component LOTs too: the same limits as the named ones."""
        for key, value in (self.model_extra or {}).items():
            if not (key.endswith("_lot") and isinstance(value, str) and value):
                continue
            if len(key.removesuffix("_lot")) > COMPONENT_KIND_CHARS:
                raise ValueError(f"{key}: component name longer than {COMPONENT_KIND_CHARS} characters")
            if len(value) > COMPONENT_LOT_CHARS:
                raise ValueError(f"{key}: longer than {COMPONENT_LOT_CHARS} characters ({len(value)})")
            check_identifier(value)
        return self

    def component_lots(self) -> dict[str, str]:
        """Every `*_lot` field is a component lot, so new component kinds need no contract change."""
        lots = {"sma_spring": self.sma_spring_lot, "busbar": self.busbar_lot}
        for key, value in (self.model_extra or {}).items():
            if key.endswith("_lot") and isinstance(value, str) and value:
                lots[key.removesuffix("_lot")] = value
        return lots


class TempSensorCheck(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    measured_temp: float
    target_temp: float
    tolerance: float = Field(ge=0)
    result: PassFail


class TofSensorCheck(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    i2c_communication: bool
    result: PassFail


class SensorTestData(ProcessDataBase):
    temp_sensor: TempSensorCheck
    tof_sensor: TofSensorCheck
    overall_result: PassFail

    def outcome(self) -> PassFail:
        return self.overall_result

    def failure_reasons(self) -> list[str]:
        reasons = [name for name in ("temp_sensor", "tof_sensor") if getattr(self, name).result == "FAIL"]
        if self.overall_result == "FAIL" and not reasons:
            reasons.append("overall_result")
        return reasons


class FirmwareUploadData(ProcessDataBase):
    firmware_version: PlainText = Field(min_length=1, max_length=50)
    upload_result: SuccessFail

    def failure_reasons(self) -> list[str]:
        return ["upload_result"] if self.upload_result == "FAIL" else []


class RobotAssemblyData(ProcessDataBase):
    """The spec names no data for robot assembly; anything the station sends is kept."""


class ForceSpec(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    target_force: float
    tolerance: float = Field(ge=0)


class TestPointResult(BaseModel):
    """One test point, e.g. T52_P200 = heated to 52 °C at 200 mm displacement."""

    model_config = ConfigDict(extra="allow", frozen=True)
    test_point_id: PlainText = Field(min_length=1, max_length=50)
    spec: ForceSpec
    result: PassFail

    def condition(self) -> tuple[float | None, float | None]:
        """(temperature °C, displacement mm) encoded in the test point id, when it follows T{temp}_P{pos}."""
        match = TEST_POINT_RE.match(self.test_point_id)
        if match is None:
            return None, None
        return float(match["temp"]), float(match["pos"])


class PerformanceTestData(ProcessDataBase):
    test_results: list[TestPointResult] = Field(min_length=1)
    overall_result: PassFail
    test_duration_seconds: float = Field(ge=0)
    tested_at: FactoryDatetime

    def outcome(self) -> PassFail:
        return self.overall_result

    def failure_reasons(self) -> list[str]:
        reasons = [point.test_point_id for point in self.test_results if point.result == "FAIL"]
        if self.overall_result == "FAIL" and not reasons:
            reasons.append("overall_result")
        return reasons


class LabelPrintingData(ProcessDataBase):
    label_printed: bool
    printer_id: PlainText = Field(min_length=1, max_length=50)
    print_time: FactoryDatetime
    barcode_verified: bool

    def failure_reasons(self) -> list[str]:
        return [name for name in ("label_printed", "barcode_verified") if not getattr(self, name)]


class PackingInspectionData(ProcessDataBase):
    inspection_result: PassFail

    def failure_reasons(self) -> list[str]:
        return ["inspection_result"] if self.inspection_result == "FAIL" else []


ProcessData = (
    LaserMarkingData
    | LmaAssemblyData
    | SensorTestData
    | FirmwareUploadData
    | RobotAssemblyData
    | PerformanceTestData
    | LabelPrintingData
    | PackingInspectionData
)

PROCESS_DATA_MODELS: dict[str, type[ProcessDataBase]] = {
    "PROC-001": LaserMarkingData,
    "PROC-002": LmaAssemblyData,
    "PROC-003": SensorTestData,
    "PROC-004": FirmwareUploadData,
    "PROC-005": RobotAssemblyData,
    "PROC-006": PerformanceTestData,
    "PROC-007": LabelPrintingData,
    "PROC-008": PackingInspectionData,
}


def parse_process_data(process_id: str, data: Any) -> ProcessDataBase:
    """Validate one process's data; raises pydantic.ValidationError (or KeyError for an unknown process)."""
    return PROCESS_DATA_MODELS[process_id].model_validate(data)


def describe_validation_error(error: ValidationError) -> list[str]:
    """Readable one-line descriptions such as `process_data.temp_sensor.measured_temp: Field required`."""
    lines = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "record"
        lines.append(f"{location}: {item['msg']}")
    return lines
