"""MQTT topic namespace: mes/v1/{site}/{line}/{station}/{branch}[/{name}]. No LOT or serial ever in a topic."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

ROOT = "mes/v1"
SEGMENT_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
INGESTOR_SHARE_GROUP = "mes-ingestor"


class Branch(StrEnum):
    EVENT = "evt"  # station → centre, facts (process completed)
    REQUEST = "req"  # station → centre, questions that want an answer (process start)
    REPLY = "rpl"  # centre → station, answers (MQTT 5 response topic)
    COMMAND = "cmd"  # centre → station, orders (print a label, …)
    STATE = "state"  # retained station state with last will


class Name(StrEnum):
    PROCESS_START = "process-start"
    PROCESS_COMPLETED = "process-completed"
    PRINT_LABEL = "print-label"  # cmd: a print job for one of the station's printers
    PRINT_RESULT = "print-result"  # evt: what became of a print job
    MEASUREMENT = "measurement"  # evt: a batch of samples (mes_contracts/measurement.py)
    ALERT = "alert"  # cmd: an SPC alert for the station (mes_contracts/alerts.py, issue 14)


@dataclass(frozen=True, slots=True)
class StationAddress:
    site: str
    line: str
    station: str

    def __post_init__(self) -> None:
        for part in (self.site, self.line, self.station):
            if not SEGMENT_RE.match(part):
                raise ValueError(f"invalid topic segment {part!r}")

    @property
    def prefix(self) -> str:
        return f"{ROOT}/{self.site}/{self.line}/{self.station}"

    def event(self, name: Name) -> str:
        return f"{self.prefix}/{Branch.EVENT}/{name}"

    def request(self, name: Name) -> str:
        return f"{self.prefix}/{Branch.REQUEST}/{name}"

    def reply(self) -> str:
        return f"{self.prefix}/{Branch.REPLY}"

    def command(self, name: str) -> str:
        return f"{self.prefix}/{Branch.COMMAND}/{name}"

    def state(self) -> str:
        return f"{self.prefix}/{Branch.STATE}"


@dataclass(frozen=True, slots=True)
class ParsedTopic:
    address: StationAddress
    branch: Branch
    name: str | None


def parse_topic(topic: str) -> ParsedTopic:
    parts = topic.split("/")
    if len(parts) not in (6, 7) or "/".join(parts[:2]) != ROOT:
        raise ValueError(f"not an MES topic: {topic!r}")
    address = StationAddress(parts[2], parts[3], parts[4])
    return ParsedTopic(address, Branch(parts[5]), parts[6] if len(parts) == 7 else None)


def ingestor_subscriptions(share_group: str = INGESTOR_SHARE_GROUP) -> list[str]:
    """MQTT 5 shared subscriptions, so several ingestor instances split the load."""
    return [f"$share/{share_group}/{ROOT}/+/+/+/{branch}/#" for branch in (Branch.REQUEST, Branch.EVENT)]


def station_state_subscription() -> str:
    """Every station's retained state (the ingestor keeps them, issue 16). Not shared: MQTT 5 sends retained
    messages only to non-shared subscriptions. Matches the central services' states too (ignored)."""
    return f"{ROOT}/+/+/+/{Branch.STATE}"


def service_address(service_id: str) -> StationAddress:
    """Central services publish their retained state like a station: mes/v1/central/services/{id}/state."""
    return StationAddress("central", "services", service_id)
