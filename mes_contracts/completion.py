"""The completion record a vendor app writes as a JSON file, and the file-name convention (spec §3.4.2)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    model_validator,
)

from mes_contracts.numbering import LOT_PATTERN
from mes_contracts.process_data import PROCESS_DATA_MODELS, ProcessDataBase, parse_process_data
from mes_contracts.route import find_step
from mes_contracts.text_rules import PlainText, check_json_tree
from mes_contracts.timestamps import ASSUMED_ZONE_KEY, FactoryDatetime, noting_assumptions
from mes_contracts.workers import WorkerId

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
    stamp = _stamp(match["stamp"])
    if stamp is None:
        return None
    return CompletionFileName(match["lot"], match["process"], stamp)


def _stamp(text: str) -> datetime | None:
    """14 digits as `strptime(text, "%Y%m%d%H%M%S")` reads them. Two digits per field, taken directly, is what
    strptime finds whenever that reading is a valid time (its patterns try two digits first); anything else is
    left to strptime itself, so the result is always strptime's (issue 18: _strptime was ~0.02 ms per file)."""
    try:
        return datetime(
            int(text[0:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]), int(text[10:12]), int(text[12:14])
        )
    except ValueError:
        pass
    try:
        return datetime.strptime(text, "%Y%m%d%H%M%S")
    except ValueError:
        return None


def completion_file_name(lot_number: str, process_id: str, stamp: datetime) -> str:
    return f"{lot_number}_{process_id}_{stamp:%Y%m%d%H%M%S}.json"


class CompletionRecord(BaseModel):
    """Body of a completion file. `serial_number` and other extra fields are optional and kept.

    Field sizes are those of their columns (process_steps, process_results); nothing in the record may hold what
    PostgreSQL cannot store (text_rules). A time without a UTC offset is read as factory time (timestamps.py);
    `assumed_timezone` then names the zone, and `stored_process_data()` carries that note into the database.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    lot_number: str = Field(pattern=rf"^{LOT_PATTERN}$")
    process_id: PlainText = Field(max_length=20)
    process_name: PlainText = Field(min_length=1, max_length=100)
    worker_id: WorkerId  # mes_contracts/workers.py: the one worker-id rule
    start_time: FactoryDatetime
    complete_time: FactoryDatetime
    process_data: dict[str, Any]
    _assumed_timezone: str | None = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _storable_and_noted(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> CompletionRecord:
        check_json_tree(data)
        with noting_assumptions() as zones:
            record: CompletionRecord = handler(data)
        if zones:
            record._assumed_timezone = zones[0]
        return record

    @property
    def assumed_timezone(self) -> str | None:
        """The zone a timestamp without offset was read in, or None when every one carried its offset."""
        return self._assumed_timezone

    def stored_process_data(self) -> dict[str, Any]:
        """process_data as stored: as written, plus the note of an assumed time zone."""
        if self._assumed_timezone is None:
            return self.process_data
        return {**self.process_data, ASSUMED_ZONE_KEY: self._assumed_timezone}

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
    file_name: PlainText | None = Field(default=None, max_length=255)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
