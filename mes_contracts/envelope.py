"""Message envelope for every MQTT payload, and time-ordered message ids minted once at the edge."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from mes_contracts.text_rules import PlainText
from mes_contracts.topics import StationAddress


class MessageType(StrEnum):
    PROCESS_START_REQUEST = "process.start.request"
    PROCESS_COMPLETED = "process.completed"
    REPLY = "reply"
    STATION_STATE = "station.state"
    LABEL_PRINT_JOB = "label.print.job"  # centre → station (cmd/print-label)
    LABEL_PRINT_RESULT = "label.print.result"  # station → centre (evt/print-result)
    MEASUREMENT = "measurement"  # station → centre (evt/measurement): samples of curves and gauges


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


def new_message_id() -> str:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, version and variant bits, 74 random bits."""
    millis = time.time_ns() // 1_000_000
    value = (millis & ((1 << 48) - 1)) << 80
    value |= int.from_bytes(os.urandom(10), "big") & ((1 << 80) - 1)
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return str(uuid.UUID(int=value))


class Source(BaseModel):
    """Who sent a message: site/line/station are topic segments (at most 64 characters each, as the topic allows)
    and must match the topic it came on; no control characters anywhere."""

    model_config = ConfigDict(frozen=True)
    site: PlainText = Field(min_length=1, max_length=64)
    line: PlainText = Field(min_length=1, max_length=64)
    station: PlainText = Field(min_length=1, max_length=64)
    gateway_id: PlainText = Field(min_length=1, max_length=128)

    @classmethod
    def of(cls, address: StationAddress, gateway_id: str) -> Source:
        return cls(site=address.site, line=address.line, station=address.station, gateway_id=gateway_id)


class Envelope(BaseModel):
    """Every message: id minted once, where it came from, what it is, when it happened, per-gateway order."""

    model_config = ConfigDict(frozen=True)

    v: Literal[1] = 1
    message_id: uuid.UUID
    type: MessageType
    source: Source
    occurred_at: AwareDatetime
    seq: int = Field(ge=0)
    replay: bool = False
    payload: dict[str, Any]

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        return cls.model_validate_json(raw)


def make_envelope(
    message_type: MessageType,
    source: Source,
    seq: int,
    payload: dict[str, Any],
    message_id: str | None = None,
    replay: bool = False,
    occurred_at: datetime | None = None,
) -> Envelope:
    return Envelope(
        message_id=uuid.UUID(message_id or new_message_id()),
        type=message_type,
        source=source,
        occurred_at=occurred_at or datetime.now(UTC),
        seq=seq,
        replay=replay,
        payload=payload,
    )


class ReplyPayload(BaseModel):
    """What the centre answers to a request or an event: the outcome plus the REST-shaped body."""

    in_reply_to: uuid.UUID
    outcome: Outcome
    http_status: int
    body: dict[str, Any]
