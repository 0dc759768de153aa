"""Which station may report which process: the station ↔ process permission (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mes_contracts.topics import ROOT, SEGMENT_RE


@dataclass(frozen=True, slots=True, order=True)
class StationKey:
    """A station's full address, as in its MQTT topic: two lines may both have an 'st01'."""

    site: str
    line: str
    station: str

    def __post_init__(self) -> None:
        for part in (self.site, self.line, self.station):
            if not SEGMENT_RE.match(part):
                raise ValueError(f"invalid station address part {part!r}: use 1-64 letters, digits, '-' or '_'")

    def __str__(self) -> str:
        return f"{self.site}/{self.line}/{self.station}"

    @classmethod
    def of_source(cls, source: str) -> StationKey | None:
        """The station of a message source as the ingestor passes it ('mes/v1/KR/L1/st02'); None otherwise
        (REST calls pass 'rest': they are made by signed-in users, not stations)."""
        parts = source.split("/")
        if len(parts) != 5 or "/".join(parts[:2]) != ROOT:
            return None
        try:
            return cls(parts[2], parts[3], parts[4])
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class StationPermissions:
    """Every (station, process) pair allowed; anything not listed is refused."""

    allowed: frozenset[tuple[StationKey, str]]

    @classmethod
    def of(cls, pairs: Iterable[tuple[StationKey, str]]) -> StationPermissions:
        return cls(frozenset(pairs))

    def allows(self, station: StationKey, process_id: str) -> bool:
        return (station, process_id) in self.allowed

    def processes_of(self, station: StationKey) -> list[str]:
        return sorted(process for key, process in self.allowed if key == station)
