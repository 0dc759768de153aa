"""Start (착공) request and response bodies (spec §3.4.1) and the common response envelope."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from mes_contracts.labels import PRINTER_ID_PATTERN
from mes_contracts.text_rules import PlainText
from mes_contracts.workers import WorkerId


class StartRequest(BaseModel):
    """POST /api/v1/process/start body; all five fields are required. Sizes are their columns'; the start time
    needs its UTC offset (the naive-timestamp policy covers completion files only: README "Completion files")."""

    model_config = ConfigDict(extra="ignore")

    lot_number: PlainText = Field(min_length=1, max_length=40)
    process_id: PlainText = Field(min_length=1, max_length=20)
    process_name: PlainText = Field(min_length=1, max_length=100)
    worker_id: WorkerId  # mes_contracts/workers.py: the one worker-id rule
    start_time: AwareDatetime
    # Optional, PROC-007 only (serial issuing): how many serials instead of the LOT's good units, which printer.
    serial_count: int | None = Field(default=None, ge=1, le=9999)
    printer_id: str | None = Field(default=None, pattern=PRINTER_ID_PATTERN)


class FirmwareInfo(BaseModel):
    version: str
    filename: str
    file_size: int
    md5_hash: str
    download_url: str


class StartData(BaseModel):
    lot_number: str
    process_id: str
    process_name: str
    worker_id: str
    start_time: AwareDatetime
    work_order_id: str
    sequence_number: int
    firmware_info: FirmwareInfo | None = None
    serial_numbers: list[str] | None = None  # PROC-007: the serials issued by this start, in order
    printer_id: str | None = None  # PROC-007: the printer their labels were queued on


class ApiBody(BaseModel):
    """`{"status", "message", "error_code"?, "data"}` — the spec's response shape for success and error."""

    status: Literal["success", "error"]
    message: str
    error_code: str | None = None
    data: dict[str, Any] | None = None

    def to_json_dict(self) -> dict[str, Any]:
        body = self.model_dump(mode="json")
        if body["error_code"] is None:
            del body["error_code"]
        return body


def success_body(message: str, data: BaseModel | dict[str, Any]) -> ApiBody:
    payload = data.model_dump(mode="json", exclude_none=True) if isinstance(data, BaseModel) else data
    return ApiBody(status="success", message=message, data=payload)


def error_body(code: str, message: str, data: dict[str, Any] | None = None) -> ApiBody:
    return ApiBody(status="error", message=message, error_code=code, data=data)
