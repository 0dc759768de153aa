"""Deciding when a completion file is complete: stat unchanged for the window and its bytes parse (pure)."""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from enum import Enum
from typing import Any

from edge_gateway.validation import Rejection


@dataclass(frozen=True, slots=True)
class FileStat:
    size: int
    mtime_ns: int


UNREADABLE = FileStat(-1, -1)  # the file could not be opened (Windows: still locked by its writer)
LOCKED_BACKOFF_MAX_S = 5.0
WRITER_RECHECK_S = 1.0  # how often a stable, unparsable file held open by its writer is looked at again


@dataclass(frozen=True, slots=True)
class Observation:
    """The stat last seen for a name and since when it has not changed (None until first probed)."""

    stat: FileStat | None
    since: float
    deadline: float
    locked: int = 0  # consecutive probes that found the file locked; the next look backs off exponentially


@dataclass(frozen=True, slots=True)
class Probe:
    """What a look at one file found: its stat (None = gone) and, when asked for, its bytes and parse.

    `rejection` is set when the file can never be sent whatever happens next (not a regular file, too large,
    unreadable by any exception): it goes to error/ at once. `writing` says another process still has the file
    open for writing (asked only once a stable file has failed to parse for the whole grace).
    """

    name: str
    stat: FileStat | None
    data: bytes | None = None
    parsed_ok: bool = False
    parsed: Any = None
    parse_error: str | None = None
    rejection: Rejection | None = None
    writing: bool = False


class Decision(Enum):
    WAIT = "wait"  # still tracked, looked at again at its deadline
    GONE = "gone"  # vanished; no longer tracked
    READY = "ready"  # stable and parses; no longer tracked
    MALFORMED = "malformed"  # stable for the grace, does not parse, nobody writing it; no longer tracked
    REFUSED = "refused"  # the probe carries a rejection (not a regular file, too large…); no longer tracked


class StabilityTracker:
    """Names under watch with their deadlines; the caller supplies probes and the (monotonic) clock."""

    def __init__(self, window: float, malformed_after: float = 0.0) -> None:
        if window <= 0:
            raise ValueError("window must be positive")
        self.window = window
        # A stable file that does not parse may be a writer pausing mid-file: it gets at least two windows,
        # and is looked at again every window meanwhile, before it counts as malformed.
        self.malformed_after = max(2 * window, malformed_after)
        self._entries: dict[str, Observation] = {}
        self._heap: list[tuple[float, str]] = []

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str) -> Observation | None:
        return self._entries.get(name)

    def add(self, name: str, now: float) -> bool:
        """Start watching `name`; it is due at once so its first stat is taken promptly. False if known."""
        if name in self._entries:
            return False
        self._schedule(name, Observation(None, now, now))
        return True

    def discard(self, name: str) -> None:
        self._entries.pop(name, None)

    def next_deadline(self) -> float | None:
        while self._heap:
            deadline, name = self._heap[0]
            entry = self._entries.get(name)
            if entry is not None and entry.deadline == deadline:
                return deadline
            heapq.heappop(self._heap)  # stale heap item
        return None

    def due(self, now: float, limit: int | None = None) -> list[tuple[str, Observation]]:
        """Names whose deadline has passed, with their observation, earliest first."""
        found: dict[str, Observation] = {}
        while self._heap and (limit is None or len(found) < limit):
            deadline, name = self._heap[0]
            if deadline > now:
                break
            heapq.heappop(self._heap)
            entry = self._entries.get(name)
            if entry is not None and entry.deadline == deadline:
                found[name] = entry
        return list(found.items())

    def wants_content(self, observation: Observation, stat: FileStat | None, now: float) -> bool:
        """Read the bytes only when the stat has held for a full window."""
        return stat is not None and stat == observation.stat and now - observation.since >= self.window

    def needs_writer_check(self, observation: Observation, now: float) -> bool:
        """Ask who has the file open only when its not parsing would otherwise make it MALFORMED now."""
        return now - observation.since >= self.malformed_after

    def apply(self, probe: Probe, now: float) -> Decision:
        """Fold one probe into the state and say what became of the name."""
        entry = self._entries.get(probe.name)
        if entry is None:
            return Decision.GONE
        if probe.rejection is not None:
            del self._entries[probe.name]
            return Decision.REFUSED
        if probe.stat is None:
            del self._entries[probe.name]
            return Decision.GONE
        if probe.stat == UNREADABLE:
            # Keep the last real stat and its age: once the lock is gone the file is read at the next look.
            locked = entry.locked + 1
            delay = min(self.window * 2 ** min(locked, 16), max(self.window, LOCKED_BACKOFF_MAX_S))
            self._schedule(probe.name, Observation(entry.stat, entry.since, now + delay, locked))
            return Decision.WAIT
        if probe.stat != entry.stat or (probe.data is not None and len(probe.data) != probe.stat.size):
            self._schedule(probe.name, Observation(probe.stat, now, now + self.window))
            return Decision.WAIT
        stable_for = now - entry.since
        if probe.data is None or stable_for < self.window:
            self._schedule(probe.name, Observation(entry.stat, entry.since, entry.since + self.window))
            return Decision.WAIT
        if probe.parsed_ok:
            del self._entries[probe.name]
            return Decision.READY
        if stable_for >= self.malformed_after and probe.writing:
            # A writer pausing mid-file: its bytes are not final until it closes the file.
            self._schedule(probe.name, Observation(entry.stat, entry.since, now + max(self.window, WRITER_RECHECK_S)))
            return Decision.WAIT
        if stable_for >= self.malformed_after:
            del self._entries[probe.name]
            return Decision.MALFORMED
        deadline = min(now + self.window, entry.since + self.malformed_after)
        self._schedule(probe.name, Observation(entry.stat, entry.since, deadline))
        return Decision.WAIT

    def _schedule(self, name: str, observation: Observation) -> None:
        self._entries[name] = observation
        heapq.heappush(self._heap, (observation.deadline, name))
