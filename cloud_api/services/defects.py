"""Defect list (issue 13 point 3): FAIL results in a time window with their cause, counts by process and cause.

The cause of a FAIL is its `failure_reasons` (the checks that failed, e.g. `temp_sensor`, `T52_P200`) together
with the measurements that failed or lie outside their limits (62.5 °C against 60 ± 1); `cause` is that, in one
readable line. One SQL statement (adapters/trace_sql.defects_sql).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from cloud_api.adapters import trace_sql
from cloud_api.adapters.database import Database
from cloud_api.domain.errors import DomainError
from cloud_api.services.trace_models import DefectOut, Defects, MeasurementOut
from mes_contracts.errors import ErrorCode

DEFAULT_DAYS = 7
MAX_DAYS = 366


def window(db: Database, start: datetime | date | None, end: datetime | date | None) -> tuple[datetime, datetime]:
    """[from, to): a date means that whole factory-local day (`to` inclusive); default the last 7 days."""
    upper = _moment(db, end, end_of_day=True) if end is not None else db.now()
    lower = _moment(db, start, end_of_day=False) if start is not None else upper - timedelta(days=DEFAULT_DAYS)
    if lower >= upper:
        raise DomainError(ErrorCode.INVALID_REQUEST, {"errors": ["from: must be before to"]})
    if upper - lower > timedelta(days=MAX_DAYS):
        raise DomainError(ErrorCode.INVALID_REQUEST, {"errors": [f"to - from: at most {MAX_DAYS} days"]})
    return lower, upper


def _moment(db: Database, value: datetime | date, end_of_day: bool) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=db.zone)
    day = value + timedelta(days=1) if end_of_day else value
    return datetime.combine(day, time.min, tzinfo=db.zone)


async def list_defects(
    db: Database,
    start: datetime | date | None,
    end: datetime | date | None,
    process_id: str | None,
    limit: int,
    lang: str,
) -> Defects:
    lower, upper = window(db, start, end)
    async with db.engine.connect() as conn:
        document = await trace_sql.fetch_defects(conn, lower, upper, process_id, limit, lang)
    answer: dict[str, Any] = {**document, "from_time": lower, "to_time": upper, "process_id": process_id}
    defects = Defects.model_validate(answer, context={"zone": db.zone})
    described = [d.model_copy(update={"cause": describe(d)}) for d in defects.defects]
    return defects.model_copy(update={"defects": described})


def describe(defect: DefectOut) -> str:
    """`temp_sensor: temperature 62.5 °C (59–61, target 60 ± 1)`; the failed checks when nothing was measured."""
    parts = [_measured(m) for m in defect.measurements]
    named = {m.test_point_id for m in defect.measurements} | {m.characteristic for m in defect.measurements}
    parts += [reason for reason in defect.failure_reasons if reason not in named and not _covered(reason, named)]
    return "; ".join(parts) if parts else "FAIL"


def _covered(reason: str, named: set[str | None]) -> bool:
    # PROC-003's check `temp_sensor` is the measurement at test point TEMP_SENSOR.
    return reason.upper() in named


def _measured(m: MeasurementOut) -> str:
    where = m.test_point_id or ""
    unit = f" {m.unit}" if m.unit else ""
    value = f"{m.value:g}{unit}" if m.value is not None else m.result or "FAIL"
    limits = ""
    if m.lower_limit is not None and m.upper_limit is not None:
        limits = f" ({m.lower_limit:g}–{m.upper_limit:g}{unit}, target {m.target:g} ± {m.tolerance:g})"
    return f"{where}: {m.characteristic} {value}{limits}".strip(": ")
