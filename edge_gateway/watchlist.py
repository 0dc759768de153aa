"""Names that need a person, each reported once (log + station state): left in pending/ too long, or not movable.

A name is "stale" when it has been in pending/ for MES_GW_STALE_PENDING_S without leaving it, measured from when
this gateway first saw it (not from its mtime: a file copied with an old mtime is not stale on arrival). That
covers temporary names never renamed (`.x`, `~x`, `*.tmp`, `*.part`), names that are not completion files, and
completion files that keep changing or stay locked. Names whose record is in the outbox are not stale: they
wait for the centre, which `oldest_pending_age_s` reports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from edge_gateway.names import is_candidate_name
from mes_contracts.station_state import STUCK_FILES_SHOWN, StuckFile

logger = logging.getLogger(__name__)

PENDING_STALE = "PENDING_STALE"
MOVE_FAILED = "MOVE_FAILED"


def stale_reason(name: str) -> str:
    if not is_candidate_name(name):
        return "temporary or non-completion name, ignored until it is renamed to <LOT>_<PROCESS>_<TIME>.json"
    return "not processed: still changing, locked, or held open by its writer"


class Watchlist:
    """Fed by the pickup's rescans and move failures; read by the station state and GET /status."""

    def __init__(self, stale_after_s: float, on_change: Callable[[str, str], None]) -> None:
        self._stale_after = stale_after_s
        self._on_change = on_change  # (code, message) of a new report: the health's last error
        self._first_seen: dict[str, float] = {}
        self._stuck: dict[str, StuckFile] = {}

    def __len__(self) -> int:
        return len(self._stuck)

    def __contains__(self, name: object) -> bool:
        return name in self._stuck

    def files(self) -> list[StuckFile]:
        """The oldest first, at most STUCK_FILES_SHOWN."""
        return sorted(self._stuck.values(), key=lambda f: f.since)[:STUCK_FILES_SHOWN]

    def seen(self, present: Iterable[str], now: float, waiting_for_centre: Callable[[str], bool]) -> None:
        """One rescan's names in pending/ (monotonic `now`): start clocks, report the stale, forget the gone."""
        names = set(present)
        for gone in [name for name in self._first_seen if name not in names]:
            del self._first_seen[gone]
        for gone in [name for name in self._stuck if name not in names]:
            del self._stuck[gone]
            logger.info("%s left pending/; no longer reported", gone)
        for name in names:
            if waiting_for_centre(name):
                self._first_seen.pop(name, None)
                continue
            first = self._first_seen.setdefault(name, now)
            if now - first >= self._stale_after and name not in self._stuck:
                age = round(now - first)
                self._report(
                    name, PENDING_STALE, f"in pending/ for {age} s without being processed: {stale_reason(name)}"
                )

    def move_failed(self, name: str, error: object) -> bool:
        """Report once that `name` cannot be moved; True the first time (the caller logs it loudly then)."""
        if name in self._stuck and self._stuck[name].code == MOVE_FAILED:
            return False
        self._report(name, MOVE_FAILED, f"cannot be moved out of pending/: {error}")
        return True

    def resolved(self, name: str) -> None:
        """The name left pending/ by our own move."""
        self._first_seen.pop(name, None)
        if self._stuck.pop(name, None) is not None:
            logger.info("%s is no longer stuck", name)

    def _report(self, name: str, code: str, message: str) -> None:
        self._stuck[name] = StuckFile(name=name[:1024], code=code, message=message, since=datetime.now(UTC))
        logger.warning("%s %s: %s", code, name, message)
        self._on_change(code, f"{name}: {message}")
