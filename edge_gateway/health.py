"""What the gateway knows about its link: broker up or down, central ingestors online, and its last error."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum

from mes_contracts.station_state import INGESTOR_SERVICE, ErrorInfo, parse_service_state, service_id_of

logger = logging.getLogger(__name__)


class Unavailable(StrEnum):
    """Why the centre cannot be reached now (`data.reason` of a 503 from the local start interface)."""

    BROKER_DOWN = "broker_down"  # no MQTT connection
    SERVER_DOWN = "server_down"  # broker up, but every ingestor that reported says offline


class Health:
    """Fed by the MQTT link (connection, retained service states) and by the pipeline (errors)."""

    def __init__(self) -> None:
        self.broker_connected = False
        self.connected_since: datetime | None = None
        self.last_error: ErrorInfo | None = None
        self._ingestors: dict[str, bool] = {}
        self._listeners: list[Callable[[], None]] = []

    def subscribe(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    @property
    def server_online(self) -> bool | None:
        """True if any ingestor says online, False if all that reported say offline, None if none reported."""
        if not self._ingestors:
            return None
        return any(self._ingestors.values())

    def unavailable(self) -> Unavailable | None:
        if not self.broker_connected:
            return Unavailable.BROKER_DOWN
        if self.server_online is False:
            return Unavailable.SERVER_DOWN
        return None

    # -- inputs ---------------------------------------------------------------------------------------------

    def link_up(self) -> None:
        self.broker_connected = True
        self.connected_since = datetime.now(UTC)
        self._changed()

    def link_down(self, reason: str) -> None:
        was_up = self.broker_connected
        self.broker_connected = False
        self.connected_since = None
        self._ingestors.clear()  # stale without the broker; the retained states come back on reconnect
        if was_up:
            self.note_error("BROKER_DOWN", reason)
        self._changed()

    def service_message(self, topic: str, payload: bytes) -> None:
        """A retained message on mes/v1/central/services/+/state (empty payload: state cleared)."""
        service_id = service_id_of(topic)
        if service_id is None:
            return
        state = parse_service_state(payload)
        before = self.server_online
        if state is None:
            self._ingestors.pop(service_id, None)
        elif state.service == INGESTOR_SERVICE:
            self._ingestors[service_id] = state.online
        after = self.server_online
        if after != before:
            logger.log(
                logging.WARNING if after is False else logging.INFO,
                "central server %s (%s)",
                {True: "online", False: "OFFLINE", None: "unknown"}[after],
                ", ".join(f"{k}={'on' if v else 'off'}" for k, v in sorted(self._ingestors.items())) or "-",
            )
            if after is False:
                self.note_error("SERVER_DOWN", "no central ingestor online")
        self._changed()

    def note_error(self, code: str, message: str) -> None:
        self.last_error = ErrorInfo(code=code, message=message[:2000], at=datetime.now(UTC))
        self._changed()

    def _changed(self) -> None:
        for listener in self._listeners:
            try:
                listener()
            except Exception:
                logger.exception("health listener failed")
