"""Recent alerts for the station window: the centre's (SPC, published on the alert topic) and the printers'.

The centre's alerts arrive over MQTT (`add`, newest kept, at most RECENT); printer alerts are derived at read
time from the print queue's status (a printer whose last state is not `ready`), so they clear by themselves
when the printer is back.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from datetime import UTC, datetime
from typing import Any

logger = logging.getLogger(__name__)

RECENT = 30


class AlertBoard:
    def __init__(self) -> None:
        self._centre: deque[dict[str, Any]] = deque(maxlen=RECENT)

    def add_payload(self, payload: bytes) -> None:
        """One alert message (an envelope with the alert as payload, or the alert itself); bad ones are dropped."""
        try:
            message = json.loads(payload)
        except ValueError:
            logger.warning("alert message is not JSON; dropped")
            return
        if not isinstance(message, dict):
            return
        inner = message.get("payload")
        self.add(inner if isinstance(inner, dict) else message)

    def add(self, alert: dict[str, Any]) -> None:
        key = alert.get("alert_id") or alert.get("id")
        if key is not None and any((a.get("alert_id") or a.get("id")) == key for a in self._centre):
            return  # a redelivered message (QoS 1) shows once
        self._centre.appendleft({"source": "centre", "received_at": datetime.now(UTC).isoformat(), **alert})

    def snapshot(self, print_queue: dict[str, Any] | None) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = []
        for printer_id, entry in sorted(((print_queue or {}).get("printers") or {}).items()):
            state = entry.get("state")
            if state and state != "ready":
                alerts.append(
                    {
                        "source": "printer",
                        "kind": "printer",
                        "printer_id": printer_id,
                        "printer_state": state,
                        "waiting": entry.get("waiting", 0),
                        "detail": entry.get("detail"),
                        "at": entry.get("updated_at"),
                    }
                )
        return alerts + list(self._centre)
