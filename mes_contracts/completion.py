"""The completion record a vendor app writes as a JSON file, and the file-name convention (spec §3.4.2)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from mes_contracts.numbering import LOT_PATTERN
from mes_contracts.process_data import PROCESS_DATA_MODELS, ProcessDataBase, parse_process_data
from mes_contracts.route import find_step

FILE_NAME_RE = re.compile(rf"^(?P<lot>{LOT_PATTERN})_(?P<process>PROC-\d{{3}})_(?P<stamp>\d{{14}})\.(?i:json)$")


@dataclass(frozen=True, slots=True)
class CompletionFileName:
    lot_number: str
    process_id: str
    stamp: datetime


def parse_completion_file_name(name: str) -> CompletionFileName | None:
    """`{LOT}_{PROC}_{YYYYMMDDHHMMSS}.json` → its parts; None for any other name."""
    match = FILE_NAME_RE.match(name)
    if match is None or find_step(match["process"]) is None:
        return None
    try:
        stamp = datetime.strptime(match["stamp"], "%Y%m%d%H%M%S")
    except ValueError:
        return None
    return CompletionFileName(match["lot"], match["process"], stamp)


def completion_file_name(lot_number: str, process_id: str, stamp: datetime) -> str:
    return f"{lot_number}_{process_id}_{stamp:%Y%m%d%H%M%S}.json"


class CompletionRecord(BaseModel):
    """Body of a completion file. `serial_number` and other extra fields are optional and kept."""

    model_config = ConfigDict(extra="allow", frozen=True)

    lot_number: str = Field(pattern=rf"^{LOT_PATTERN}$")
    process_id: str
    process_name: str = Field(min_length=1)
    worker_id: str = Field(min_length=1, max_length=50)
    start_time: AwareDatetime
    complete_time: AwareDatetime
    process_data: dict[str, Any]

    @model_validator(mode="after")
    def _check_consistency(self) -> CompletionRecord:
        step = find_step(self.process_id)
        if step is None:
            raise ValueError(f"unknown process_id {self.process_id}")
        if self.process_name not in (step.name_ko, step.name_en):
            raise ValueError(f"process_name {self.process_name!r} does not match {self.process_id} ({step.name_ko})")
        if self.complete_time < self.start_time:
            raise ValueError("complete_time is before start_time")
        if self.process_id in PROCESS_DATA_MODELS:
            try:
                parse_process_data(self.process_id, self.process_data)
            except ValidationError as error:
                raise ValueError(_prefixed(error)) from None
        return self

    def typed_data(self) -> ProcessDataBase:
        return parse_process_data(self.process_id, self.process_data)


def _prefixed(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        location = ".".join(["process_data", *(str(p) for p in item["loc"])])
        parts.append(f"{location}: {item['msg']}")
    return "; ".join(parts)


class CompletionEvent(BaseModel):
    """Payload of a `process.completed` envelope: the file's JSON exactly as written, its name and its hash."""

    record: dict[str, Any]
    file_name: str | None = Field(default=None, max_length=255)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
