"""Pure, seeded builders of start requests, completion records and deliberately broken completion files."""

from __future__ import annotations

import copy
import json
import random
from datetime import datetime, timedelta
from typing import Any

from line_simulator.clock import iso, to_kst
from line_simulator.process_values import GENERATORS, DataContext
from mes_contracts.completion import completion_file_name
from mes_contracts.errors import ErrorCode
from mes_contracts.numbering import MAX_LOT_SEQUENCE, format_lot_number, parse_lot_number
from mes_contracts.route import get_step

WRONG_FILE_NAME = "result_final.json"
# The field each process's "required field missing" sample drops (a dotted path inside process_data).
REQUIRED_FIELD_DROPPED: dict[str, str] = {
    "PROC-001": "marking_result",
    "PROC-002": "busbar_lot",
    "PROC-003": "temp_sensor.measured_temp",
    "PROC-004": "upload_result",
    "PROC-006": "overall_result",
    "PROC-007": "printer_id",
    "PROC-008": "inspection_result",
}


def start_request(process_id: str, lot_number: str, worker_id: str, start_time: datetime) -> dict[str, Any]:
    """The §3.4.1 start body, as a station sends it after the LOT barcode is scanned."""
    return {
        "lot_number": lot_number,
        "process_id": process_id,
        "process_name": get_step(process_id).name_ko,
        "worker_id": worker_id,
        "start_time": iso(start_time),
    }


def completion_record(
    process_id: str,
    lot_number: str,
    worker_id: str,
    start_time: datetime,
    complete_time: datetime,
    rng: random.Random,
    fail: bool = False,
    **overrides: Any,
) -> dict[str, Any]:
    """A §3.4.2 completion body with realistic values; `fail` makes the process's verdict FAIL.

    Keyword overrides replace top-level fields (datetimes are written as ISO 8601 +09:00) or add extra
    ones such as `serial_number`; a `process_data` override is merged over the generated data.
    """
    ctx = DataContext(lot_number, start_time, complete_time)
    record: dict[str, Any] = {
        "lot_number": lot_number,
        "process_id": process_id,
        "process_name": get_step(process_id).name_ko,
        "worker_id": worker_id,
        "start_time": iso(start_time),
        "complete_time": iso(complete_time),
        "process_data": GENERATORS[process_id](ctx, rng, fail),
    }
    for key, value in overrides.items():
        if key == "process_data" and isinstance(value, dict):
            record["process_data"] = {**record["process_data"], **value}
        else:
            record[key] = iso(value) if isinstance(value, datetime) else value
    return record


def render(record: dict[str, Any]) -> bytes:
    """UTF-8 JSON as a vendor app writes it: Korean kept readable, indented."""
    return (json.dumps(record, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def other_lot_number(lot_number: str) -> str:
    """A different, well-formed LOT number of the same day and shift, chosen so it is unlikely to exist (999)."""
    lot = parse_lot_number(lot_number)
    sequence = MAX_LOT_SEQUENCE if lot.sequence != MAX_LOT_SEQUENCE else MAX_LOT_SEQUENCE - 1
    return format_lot_number(lot.production_date, lot.shift, sequence, lot.product, lot.plant)


def _drop(data: dict[str, Any], dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        data = data[key]
    del data[leaf]


def without_required_field(record: dict[str, Any]) -> dict[str, Any]:
    """A copy missing one required field: a process_data field, or the whole process_data for PROC-005."""
    broken = copy.deepcopy(record)
    dotted = REQUIRED_FIELD_DROPPED.get(broken["process_id"])
    if dotted is None:
        del broken["process_data"]
    else:
        _drop(broken["process_data"], dotted)
    return broken


def bad_files(lot_number: str, process_id: str, stamp: datetime) -> list[tuple[str, bytes, str]]:
    """(file name, bytes, expected error code) samples of broken completion files, deterministic per input.

    Valid-looking names use `stamp` + 1, 2, 3 s, so they never collide with a real file stamped at or before
    `stamp`. Samples: truncated JSON, a required field missing, a wrong file name, a LOT mismatch.
    """
    complete = to_kst(stamp).replace(microsecond=0)
    rng = random.Random(f"{lot_number}|{process_id}|{complete:%Y%m%d%H%M%S}")
    start = complete - timedelta(minutes=5)
    record = completion_record(process_id, lot_number, "W001", start, complete, rng)

    def name(offset: int) -> str:
        return completion_file_name(lot_number, process_id, complete + timedelta(seconds=offset))

    text = render(record).decode("utf-8")
    truncated = text[: len(text) // 2].encode("utf-8")
    foreign = completion_record(process_id, other_lot_number(lot_number), "W001", start, complete, rng)
    return [
        (name(1), truncated, ErrorCode.INVALID_JSON.value),
        (name(2), render(without_required_field(record)), ErrorCode.INVALID_PROCESS_DATA.value),
        (WRONG_FILE_NAME, render(record), ErrorCode.INVALID_FILE_NAME.value),
        (name(3), render(foreign), ErrorCode.FILE_CONTENT_MISMATCH.value),
    ]
