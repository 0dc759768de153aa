"""Retained station state (health of one gateway) and the central services' retained state it watches."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from mes_contracts.topics import ROOT, Branch, StationAddress, service_address

INGESTOR_SERVICE = "ingestor"


class ErrorInfo(BaseModel):
    """The last problem the gateway met: a short code, a human message and when it happened."""

    model_config = ConfigDict(frozen=True)

    code: str = Field(min_length=1, max_length=64)
    message: str = Field(max_length=2000)
    at: AwareDatetime


class StuckFile(BaseModel):
    """A name in the station's folders that needs a person: left in pending/ too long, or not movable."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(max_length=1024)
    code: str = Field(min_length=1, max_length=64)  # PENDING_STALE, MOVE_FAILED
    message: str = Field(max_length=2000)
    since: AwareDatetime


STUCK_FILES_SHOWN = 50  # the retained state lists at most this many; `stuck_count` has the total


class StationState(BaseModel):
    """Payload of a `station.state` envelope on `StationAddress.state()` (retained; the last will says offline)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    site: str
    line: str
    station: str
    gateway_id: str
    online: bool
    software_version: str
    outbox_depth: int = Field(default=0, ge=0)
    oldest_pending_age_s: float | None = Field(default=None, ge=0)
    outbox_full: bool = False
    last_error: ErrorInfo | None = None
    connected_since: AwareDatetime | None = None
    server_online: bool | None = None  # None: no central ingestor has reported its state yet
    counters: dict[str, int] = Field(default_factory=dict)
    stuck_files: list[StuckFile] = Field(default_factory=list, max_length=STUCK_FILES_SHOWN)
    stuck_count: int = Field(default=0, ge=0)
    reported_at: AwareDatetime

    @property
    def address(self) -> StationAddress:
        return StationAddress(self.site, self.line, self.station)


class ServiceState(BaseModel):
    """What a central service publishes, retained with a last will, on `service_address(id).state()`."""

    model_config = ConfigDict(extra="allow")

    service: str
    online: bool


def service_state_filter() -> str:
    """Subscription filter for every central service's state: mes/v1/central/services/+/state."""
    example = service_address("x")
    return f"{ROOT}/{example.site}/{example.line}/+/{Branch.STATE}"


def service_id_of(topic: str) -> str | None:
    """The `{id}` of mes/v1/central/services/{id}/state, or None for any other topic."""
    parts = topic.split("/")
    example = service_address("x")
    if len(parts) != 6 or parts[:4] != [*ROOT.split("/"), example.site, example.line] or parts[5] != Branch.STATE:
        return None
    return parts[4] or None


def parse_service_state(raw: bytes) -> ServiceState | None:
    """The payload, or None when it is empty (retained state cleared) or unreadable."""
    if not raw:
        return None
    try:
        return ServiceState.model_validate_json(raw)
    except ValidationError:
        return None
