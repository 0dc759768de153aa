"""Label contracts: the §4.3 print request bodies, printer descriptions and the centre↔station print messages."""

# Flow: the centre renders the label program (ZPL/TSPL/EZPL) and sends a PrintJob on the station's
# cmd/print-label topic; the station gateway queues it per printer (labels never interleave), checks the
# printer's status, prints, and reports a PrintResult on its own evt/print-result topic through its outbox
# (so results made while cut off from the server still arrive). The printer's description travels with
# the job: a gateway needs no registry of its own to print what is already queued.

from __future__ import annotations

import uuid
from datetime import date
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

PRINTER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$"


class LabelType(StrEnum):
    LOT = "LOT"
    SERIAL = "SERIAL"


class PrinterLanguage(StrEnum):
    ZPL = "ZPL"  # Zebra ZT410 / ZT230
    TSPL = "TSPL"  # TSC TTP-244 Pro / TTP-345
    EZPL = "EZPL"  # Godex G500 / G530


class PrinterState(StrEnum):
    """What a status query found; `offline` also covers 'no answer' and 'connection refused'."""

    READY = "ready"
    OFFLINE = "offline"
    PAPER_OUT = "paper_out"
    HEAD_OPEN = "head_open"
    PAUSED = "paused"


class LotLabelRequest(BaseModel):
    """§4.3 LOT label request body."""

    model_config = ConfigDict(extra="forbid")

    label_type: Literal[LabelType.LOT]
    lot_number: str = Field(min_length=1, max_length=40)
    product_model: str = Field(min_length=1, max_length=100)
    target_quantity: int = Field(ge=1, le=9999)
    created_date: date
    printer_id: str = Field(pattern=PRINTER_ID_PATTERN)


class SerialLabelRequest(BaseModel):
    """§4.3 serial label request body."""

    model_config = ConfigDict(extra="forbid")

    label_type: Literal[LabelType.SERIAL]
    serial_number: str = Field(min_length=1, max_length=50)
    lot_number: str = Field(min_length=1, max_length=40)
    product_model: str = Field(min_length=1, max_length=100)
    created_date: date
    printer_id: str = Field(pattern=PRINTER_ID_PATTERN)


LabelPrintRequest = Annotated[LotLabelRequest | SerialLabelRequest, Field(discriminator="label_type")]


class PrinterConfig(BaseModel):
    """One registered printer: where it is attached and how to talk to it."""

    printer_id: str = Field(pattern=PRINTER_ID_PATTERN)
    station: str = Field(min_length=1, max_length=64, description="station id of the gateway it hangs on")
    transport: Literal["tcp", "serial"]
    host: str | None = Field(default=None, max_length=255)
    port: int = Field(default=9100, ge=1, le=65535)
    serial_port: str | None = Field(default=None, max_length=255, description="e.g. COM3 or /dev/ttyUSB0")
    baud: int = Field(default=9600, ge=1200, le=921600)
    language: PrinterLanguage = PrinterLanguage.ZPL
    dpi: Literal[203, 300] = 203
    width_mm: float = Field(default=60.0, gt=10, le=200)
    height_mm: float = Field(default=40.0, gt=10, le=300)


class PrintMode(StrEnum):
    IMMEDIATE = "immediate"  # a person waits (POST /label/print): a printer fault fails the job at once
    QUEUED = "queued"  # automatic labels (LOT at creation, serials at PROC-007): wait in order until printed


class PrintJob(BaseModel):
    """cmd/print-label payload: one label program for one printer."""

    job_id: uuid.UUID
    printer: PrinterConfig
    label_type: LabelType
    label_key: str = Field(description="the serial number or LOT number on the label")
    program: str = Field(description="label program; ZPL is UTF-8, TSPL/EZPL bitmap bytes ride as latin-1 chars")
    mode: PrintMode
    reprint: bool = False
    created_at: AwareDatetime
    expires_at: AwareDatetime | None = Field(default=None, description="IMMEDIATE job not started by then: dropped")


class PrintStatus(StrEnum):
    PRINTED = "printed"
    FAILED = "failed"  # printer fault on an IMMEDIATE job, or the job expired; nothing printed
    WAITING = "waiting"  # QUEUED job held back by a printer fault; a later result follows


class PrintResult(BaseModel):
    """evt/print-result payload."""

    job_id: uuid.UUID
    printer_id: str
    status: PrintStatus
    printer_state: PrinterState
    error_code: str | None = Field(default=None, description="PRINTER_NOT_CONNECTED / PRINTER_OUT_OF_PAPER / …")
    detail: str | None = None
    print_time: AwareDatetime | None = None
