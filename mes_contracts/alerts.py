"""SPC alert contract: what the centre publishes when a new point breaks a Nelson rule or a Cpk falls too low.

Topic: `mes/v1/{site}/{line}/{station}/cmd/alert` (`alert_topic(address)`), QoS 1, not retained, to the station
whose completion produced the point (the station's gateway subscribes to it and keeps recent alerts for the
station window). A point stored through REST (no station topic) raises the alert in the database and on the
console only. The payload is an `AlertMessage` as JSON (UTF-8); `alert_id` is the database id, stable across
re-publication, so a receiver de-duplicates by it. Messages carry both Korean and English text.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from mes_contracts.topics import ROOT, Branch, Name, StationAddress

ALERT_QOS = 1


class AlertKind(StrEnum):
    NELSON = "nelson"  # a point breaks one of the eight Nelson rules against the current baseline
    CPK_LOW = "cpk_low"  # the Cpk over the recent window fell below the configured threshold


class AlertStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"


NELSON_RULE_TEXT: dict[int, tuple[str, str]] = {
    1: ("관리한계(3σ) 밖의 점", "point beyond 3 sigma"),
    2: ("중심선 한쪽에 연속 9점", "9 points in a row on one side of the centre line"),
    3: ("연속 6점 증가 또는 감소", "6 points in a row steadily increasing or decreasing"),
    4: ("연속 14점 교대로 증감", "14 points in a row alternating up and down"),
    5: ("연속 3점 중 2점이 같은 쪽 2σ 밖", "2 of 3 points beyond 2 sigma on the same side"),
    6: ("연속 5점 중 4점이 같은 쪽 1σ 밖", "4 of 5 points beyond 1 sigma on the same side"),
    7: ("연속 15점이 1σ 안", "15 points in a row within 1 sigma"),
    8: ("연속 8점이 양쪽 1σ 밖", "8 points in a row beyond 1 sigma on either side"),
}


class AlertMessage(BaseModel):
    """One alert as the centre publishes it (and as `GET /api/v1/alerts` lists it, plus status fields)."""

    model_config = ConfigDict(frozen=True)

    v: Literal[1] = 1
    type: Literal["alert"] = "alert"
    message_id: uuid.UUID  # fresh per publication
    alert_id: int = Field(ge=1)  # the database id: stable, de-duplicate by it
    kind: AlertKind
    rule: int | None = Field(default=None, ge=1, le=8)  # Nelson rule number for kind=nelson
    process_id: str = Field(max_length=20)
    characteristic: str = Field(max_length=50)
    test_point_id: str | None = Field(default=None, max_length=50)
    station: str | None = Field(default=None, max_length=255)  # topic prefix of the station, when known
    lot_number: str | None = Field(default=None, max_length=40)
    serial_number: str | None = Field(default=None, max_length=50)
    value: float | None = None  # the point's value (the subgroup's statistic for subgrouped charts)
    cpk: float | None = None  # for kind=cpk_low
    threshold: float | None = None  # for kind=cpk_low
    point_time: AwareDatetime
    raised_at: AwareDatetime
    message_ko: str = Field(max_length=500)
    message_en: str = Field(max_length=500)

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> AlertMessage:
        return cls.model_validate_json(raw)


def alert_topic(address: StationAddress) -> str:
    """The station's alert topic: mes/v1/{site}/{line}/{station}/cmd/alert."""
    return address.command(Name.ALERT)


def station_of_prefix(prefix: str | None) -> StationAddress | None:
    """The address of a `processed_messages`/`process_results.source_station` value (a topic prefix), if it is one."""
    if not prefix:
        return None
    parts = prefix.split("/")
    if len(parts) != 5 or "/".join(parts[:2]) != ROOT:
        return None
    try:
        return StationAddress(parts[2], parts[3], parts[4])
    except ValueError:
        return None


def gateway_alert_filter(address: StationAddress) -> str:
    """What a station gateway subscribes to for its alerts."""
    return f"{address.prefix}/{Branch.COMMAND}/{Name.ALERT}"
