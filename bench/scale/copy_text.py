"""COPY … FROM STDIN in text format: the tables the generator writes, their columns, and value encoding.

One line per row, tab-separated, `\\N` for NULL; backslashes doubled (JSON text keeps its escapes as characters).
Columns with a default (bigserial ids nobody references, identity `queue_seq`, `recorded_at`) are left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

NULL = "\\N"

# Columns a later migration adds: the rows always carry them last, and the loader cuts them off when absent.
OPTIONAL_LAST = {"measurements": "station"}
# Load order = foreign-key order.
COLUMNS: dict[str, list[str]] = {
    "lots": [
        "id",
        "lot_number",
        "product_model_id",
        "target_quantity",
        "shift",
        "production_date",
        "sequence",
        "status",
        "created_by",
        "created_at",
        "updated_at",
    ],
    "lot_status_history": ["lot_id", "from_status", "to_status", "changed_at", "actor", "reason", "message_id"],
    "serials": ["id", "serial_number", "lot_id", "sequence", "status", "created_at"],
    "process_runs": [
        "id",
        "lot_id",
        "process_id",
        "work_order_id",
        "sequence_number",
        "status",
        "start_time",
        "start_worker_id",
        "start_message_id",
        "start_source",
        "started_recorded_at",
        "complete_time",
        "complete_worker_id",
        "result",
        "completion_count",
        "completed_recorded_at",
    ],
    "process_results": [
        "id",
        "run_id",
        "lot_id",
        "serial_id",
        "process_id",
        "message_id",
        "source_station",
        "source_file_name",
        "source_sha256",
        "worker_id",
        "start_time",
        "complete_time",
        "result",
        "failure_reasons",
        "process_data",
        "replay",
        "recorded_at",
    ],
    "component_lots": ["lot_id", "result_id", "process_id", "component_kind", "component_lot", "recorded_at"],
    "measurements": [
        "time",
        "lot_id",
        "serial_id",
        "process_id",
        "result_id",
        "test_point_id",
        "characteristic",
        "value",
        "unit",
        "target",
        "tolerance",
        "lower_limit",
        "upper_limit",
        "result",
        "station",  # migration 0010 (the completion writer fills it); left out when the column is not there
    ],
    "serial_status_history": [
        "serial_id",
        "from_status",
        "to_status",
        "changed_at",
        "process_id",
        "cause",
        "result_id",
        "message_id",
    ],
    "label_print_jobs": [
        "job_id",
        "printer_id",
        "label_type",
        "lot_id",
        "serial_id",
        "label_key",
        "mode",
        "reprint",
        "requested_by",
        "worker_id",
        "reason",
        "status",
        "printer_state",
        "target",
        "dispatch_count",
        "created_at",
        "dispatched_at",
        "printed_at",
        "result_at",
        "result_message_id",
    ],
}


def ts(moment: datetime) -> str:
    return moment.isoformat(sep=" ")


def text_value(value: object) -> str:
    """One value in COPY text format (None → NULL; str escaped; the rest via str())."""
    if value is None:
        return NULL
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return ts(value)
    return str(value)


def escape(text: str) -> str:
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


def line(values: Iterable[object]) -> str:
    return "\t".join(text_value(v) for v in values) + "\n"


class Buffers:
    """Rows waiting for COPY, per table (lines of text), plus the counts for the report."""

    def __init__(self) -> None:
        self.lines: dict[str, list[str]] = {table: [] for table in COLUMNS}
        self.lines["measurement_samples"] = []  # unused: samples go as binary COPY (samples.py)

    def add(self, table: str, *values: object) -> None:
        self.lines[table].append(line(values))

    def add_line(self, table: str, text: str) -> None:
        self.lines[table].append(text)

    def clear(self) -> None:
        for rows in self.lines.values():
            rows.clear()
