"""Label rules without I/O: printer descriptions, serial counts, job states and how a print result reads."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mes_contracts.alerts import station_of_prefix
from mes_contracts.errors import ErrorCode
from mes_contracts.labels import (
    PRINTER_ID_PATTERN,
    LabelType,
    PrinterConfig,
    PrinterLanguage,
    PrinterState,
    PrintResult,
    PrintStatus,
)
from mes_contracts.numbering import MAX_SERIAL_SEQUENCE
from mes_contracts.topics import SEGMENT_RE, StationAddress

SERIAL_PROCESS_ID = "PROC-007"  # serial numbers are issued when label printing starts (FR-SN-001)
SEGMENT = SEGMENT_RE.pattern


class JobStatus(StrEnum):
    QUEUED = "queued"  # waiting for the dispatcher
    DISPATCHED = "dispatched"  # sent to the station, no result yet
    PRINTED = "printed"
    FAILED = "failed"
    WAITING = "waiting"  # the station holds it until the printer is ready again


class PrinterFields(BaseModel):
    """What PATCH may change; every field optional."""

    model_config = ConfigDict(extra="forbid")

    site: str | None = Field(default=None, pattern=SEGMENT)
    line: str | None = Field(default=None, pattern=SEGMENT)
    station: str | None = Field(default=None, pattern=SEGMENT, description="station id of the gateway it hangs on")
    transport: Literal["tcp", "serial"] | None = None
    host: str | None = Field(default=None, max_length=255)
    port: int | None = Field(default=None, ge=1, le=65535)
    serial_port: str | None = Field(default=None, max_length=255, description="e.g. COM3 or /dev/ttyUSB0")
    baud: int | None = Field(default=None, ge=1200, le=921600)
    language: PrinterLanguage | None = None
    dpi: Literal[203, 300] | None = None
    width_mm: float | None = Field(default=None, gt=10, le=200)
    height_mm: float | None = Field(default=None, gt=10, le=300)
    purposes: list[LabelType] | None = Field(default=None, min_length=1, description="LOT and/or SERIAL")
    active: bool | None = None
    description: str | None = Field(default=None, max_length=500)


class PrinterIn(BaseModel):
    """A printer to register (POST /api/v1/printers, `mes printer add`)."""

    model_config = ConfigDict(extra="forbid")

    printer_id: str = Field(pattern=PRINTER_ID_PATTERN)
    site: str = Field(default="KR", pattern=SEGMENT)
    line: str = Field(default="L1", pattern=SEGMENT)
    station: str = Field(pattern=SEGMENT, description="station id of the gateway it hangs on, e.g. st07")
    transport: Literal["tcp", "serial"] = "tcp"
    host: str | None = Field(default=None, max_length=255)
    port: int = Field(default=9100, ge=1, le=65535)
    serial_port: str | None = Field(default=None, max_length=255, description="e.g. COM3 or /dev/ttyUSB0")
    baud: int = Field(default=9600, ge=1200, le=921600)
    language: PrinterLanguage = PrinterLanguage.ZPL
    dpi: Literal[203, 300] = 203
    width_mm: float = Field(default=60.0, gt=10, le=200)
    height_mm: float = Field(default=40.0, gt=10, le=300)
    purposes: list[LabelType] = Field(default_factory=lambda: [LabelType.LOT, LabelType.SERIAL], min_length=1)
    active: bool = True
    description: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _reachable(self) -> Self:
        check_transport(self.transport, self.host, self.serial_port)
        self.purposes = sorted(set(self.purposes))
        return self


def check_transport(transport: str, host: str | None, serial_port: str | None) -> None:
    if transport == "tcp" and not host:
        raise ValueError("a tcp printer needs a host")
    if transport == "serial" and not serial_port:
        raise ValueError("a serial printer needs a serial_port")


@dataclass(frozen=True, slots=True)
class Printer:
    """A registered printer as the centre knows it."""

    printer_id: str
    site: str
    line: str
    station: str
    transport: str
    host: str | None
    port: int
    serial_port: str | None
    baud: int
    language: PrinterLanguage
    dpi: int
    width_mm: float
    height_mm: float
    purposes: tuple[str, ...]
    active: bool
    description: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Printer:
        return cls(
            row["printer_id"],
            row["site"],
            row["line"],
            row["station"],
            row["transport"],
            row["host"],
            row["port"],
            row["serial_port"],
            row["baud"],
            PrinterLanguage(row["language"]),
            row["dpi"],
            float(row["width_mm"]),
            float(row["height_mm"]),
            tuple(row["purposes"]),
            row["active"],
            row.get("description"),
        )

    @property
    def address(self) -> StationAddress:
        return StationAddress(self.site, self.line, self.station)

    def config(self) -> PrinterConfig:
        """The description that travels with each job (the gateway keeps no registry of its own)."""
        return PrinterConfig.model_validate(
            {
                "printer_id": self.printer_id,
                "station": self.station,
                "transport": self.transport,
                "host": self.host,
                "port": self.port,
                "serial_port": self.serial_port,
                "baud": self.baud,
                "language": self.language,
                "dpi": self.dpi,
                "width_mm": self.width_mm,
                "height_mm": self.height_mm,
            }
        )

    def public(self) -> dict[str, Any]:
        return {
            "printer_id": self.printer_id,
            "site": self.site,
            "line": self.line,
            "station": self.station,
            "transport": self.transport,
            "host": self.host,
            "port": self.port,
            "serial_port": self.serial_port,
            "baud": self.baud,
            "language": self.language.value,
            "dpi": self.dpi,
            "width_mm": self.width_mm,
            "height_mm": self.height_mm,
            "purposes": list(self.purposes),
            "active": self.active,
            "description": self.description,
        }


def serial_count(target_quantity: int, failed_units: int, requested: int | None) -> int:
    """How many serials a PROC-007 start issues: the request's count, else the LOT's units still good.

    Each FAIL completion result recorded for the LOT counts as one failed unit (README Decisions).
    """
    count = requested if requested is not None else target_quantity - failed_units
    return max(0, min(count, MAX_SERIAL_SEQUENCE))


def station_of_source(source: str) -> StationAddress | None:
    """The station a start came from: MQTT sources are topic prefixes mes/v1/{site}/{line}/{station}."""
    return station_of_prefix(source)


@dataclass(frozen=True, slots=True)
class ResultUpdate:
    """What a print result does to its job row."""

    status: JobStatus
    printer_state: str
    error_code: str | None
    detail: str | None


def result_update(result: PrintResult) -> ResultUpdate:
    status = {
        PrintStatus.PRINTED: JobStatus.PRINTED,
        PrintStatus.FAILED: JobStatus.FAILED,
        PrintStatus.WAITING: JobStatus.WAITING,
    }[result.status]
    code = None if status is JobStatus.PRINTED else failure_code(result.error_code, result.printer_state)
    return ResultUpdate(status, result.printer_state.value, code.value if code else None, result.detail)


def failure_code(reported: str | None, state: PrinterState) -> ErrorCode:
    """The spec's error for a printer that did not print: the station's code when it is one of ours."""
    if reported is not None and reported in ErrorCode.__members__:
        return ErrorCode(reported)
    if state is PrinterState.PAPER_OUT:
        return ErrorCode.PRINTER_OUT_OF_PAPER
    return ErrorCode.PRINTER_NOT_CONNECTED


def printer_error_data(printer_id: str, state: str) -> dict[str, Any]:
    """`data` of a printer error body (§4.3: `printer_status` "offline" for an unreachable printer)."""
    return {"printer_id": printer_id, "printer_status": state}
