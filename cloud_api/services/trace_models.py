"""Typed answers of the trace, recall and defect reads (issue 13): the shape the console and other tools rely on.

The SQL (adapters/trace_sql.py) returns one JSON document per answer; these models validate it. Times are shown in
the factory's zone with the offset: validate with `context={"zone": ZoneInfo(...)}` (`LocalTime`).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo


def _in_zone(value: datetime, info: ValidationInfo) -> datetime:
    zone = (info.context or {}).get("zone")
    return value.astimezone(zone) if isinstance(zone, ZoneInfo) else value


LocalTime = Annotated[datetime, AfterValidator(_in_zone)]


class Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class MeasurementOut(Model):
    time: LocalTime
    test_point_id: str | None
    characteristic: str
    value: float | None
    unit: str | None
    target: float | None
    tolerance: float | None
    lower_limit: float | None
    upper_limit: float | None
    result: str | None
    out_of_limits: bool


class ComponentOut(Model):
    component_kind: str
    component_lot: str


class FirmwareOut(Model):
    version: str | None
    md5_hash: str | None
    filename: str | None
    file_size: int | None
    target_mcu: str | None


class ResultOut(Model):
    """One completion record (file) of a process: LOT-level, or UNIT-level when it named a serial."""

    result_id: int
    level: str
    serial_number: str | None
    result: str
    failure_reasons: list[str]
    worker_id: str
    station: str
    file_name: str | None
    start_time: LocalTime
    complete_time: LocalTime
    recorded_at: LocalTime
    process_data: dict[str, Any]
    measurements: list[MeasurementOut]
    component_lots: list[ComponentOut]
    firmware: FirmwareOut | None


class ResultCounts(Model):
    """All completion records of the process for the LOT (listed or not)."""

    total: int
    lot_level: int
    unit_level: int
    passed: int
    failed: int


class ReasonCount(Model):
    reason: str
    count: int


class ProcessOut(Model):
    """A process of the route with its LOT-level run (work order, start and completion), the counts of its records
    and the records listed (services/trace.py: which ones)."""

    process_id: str
    process_name: str
    sequence: int
    status: str
    work_order_id: str | None
    start_time: LocalTime | None
    start_worker_id: str | None
    start_station: str | None
    complete_time: LocalTime | None
    complete_worker_id: str | None
    result: str | None
    completion_count: int
    result_counts: ResultCounts
    failure_counts: list[ReasonCount]
    results: list[ResultOut]
    serial_result: str | None = None  # serial trace: this serial's own latest unit-level verdict


class LotOut(Model):
    lot_number: str
    product_model: str
    model_code: str
    target_quantity: int
    shift: str
    production_date: date
    status: str
    created_by: str
    created_at: LocalTime


class LotHistoryOut(Model):
    from_status: str | None
    to_status: str
    changed_at: LocalTime
    actor: str
    reason: str | None


class SerialHistoryOut(Model):
    from_status: str
    to_status: str
    changed_at: LocalTime
    process_id: str | None
    cause: str
    message_id: str | None


class UsedComponentOut(Model):
    process_id: str
    component_kind: str
    component_lot: str
    serial_number: str | None
    records: int = 1  # completion records that named it


class LabelOut(Model):
    job_id: str
    label_type: str
    serial_number: str | None
    printer_id: str
    reprint: bool
    reason: str | None
    worker_id: str | None
    requested_by: str
    status: str
    requested_at: LocalTime
    printed_at: LocalTime | None


class SerialOut(Model):
    serial_number: str
    sequence: int
    status: str
    created_at: LocalTime


class SerialTrace(Model):
    """GET /api/v1/trace/serials/{serial}."""

    serial: SerialOut
    status_history: list[SerialHistoryOut]
    lot: LotOut
    processes: list[ProcessOut]
    component_lots: list[UsedComponentOut]
    firmware: FirmwareOut | None = None  # the latest PROC-004 result's
    labels: list[LabelOut]


class LotSerialOut(Model):
    serial_number: str
    sequence: int
    status: str
    created_at: LocalTime
    failed_process: str | None


class LotTrace(Model):
    """GET /api/v1/trace/lots/{lot}."""

    lot: LotOut
    status_history: list[LotHistoryOut]
    processes: list[ProcessOut]
    component_lots: list[UsedComponentOut]
    firmware: FirmwareOut | None = None
    serials: list[LotSerialOut]
    serial_counts: dict[str, int] = {}
    labels: list[LabelOut]


class RecallSerialOut(Model):
    serial_number: str
    status: str


class RecallLotOut(Model):
    lot_number: str
    lot_status: str
    production_date: date
    product_model: str
    component_kind: str
    process_id: str
    process_name: str
    consumed_at: LocalTime | None
    worker_id: str | None
    station: str | None
    serials: list[RecallSerialOut]


class Recall(Model):
    """GET /api/v1/trace/components?kind=&lot=."""

    component_kind: str | None
    component_lot: str
    lot_count: int
    serial_count: int
    serial_counts: dict[str, int]
    lots: list[RecallLotOut]


class DefectOut(Model):
    result_id: int
    lot_number: str
    serial_number: str | None
    process_id: str
    process_name: str
    worker_id: str
    start_worker_id: str | None
    station: str
    complete_time: LocalTime
    failure_reasons: list[str]
    measurements: list[MeasurementOut]
    cause: str = ""


class CountByProcess(Model):
    process_id: str
    count: int


class CountByCause(Model):
    process_id: str
    cause: str
    count: int


class Defects(Model):
    """GET /api/v1/defects."""

    from_time: LocalTime
    to_time: LocalTime
    process_id: str | None
    total: int
    by_process: list[CountByProcess]
    by_cause: list[CountByCause]
    defects: list[DefectOut]
