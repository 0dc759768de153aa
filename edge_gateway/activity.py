"""What the station did today, for the station window: the current LOT and process, starts, refusals, serials.

Fed by the loopback start route with every answer it returns (success or refusal), in memory only: a gateway
restart starts the day's start count from zero (the completions of the day are counted from `completed/`, which
survives). The PROC-007 serials come from the start answers (`data.serial_numbers`); their label states are read
from the print queue (edge_gateway/label_view.py).
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

RECENT_ANSWERS = 20
RECENT_SERIAL_STARTS = 5


@dataclass(frozen=True, slots=True)
class StartAnswer:
    """One answer of the loopback start route, as the window shows it."""

    at: str  # local ISO time of the answer
    lot_number: str | None
    process_id: str | None
    worker_id: str | None
    http_status: int
    status: str  # "success" | "error"
    error_code: str | None
    message: str | None
    work_order_id: str | None


@dataclass(slots=True)
class StationActivity:
    """In-memory day book of the loopback start route (one per gateway)."""

    day: date = field(default_factory=date.today)
    starts_today: int = 0
    refusals_today: int = 0
    current: dict[str, Any] | None = None  # the last successful start's data
    recent: deque[StartAnswer] = field(default_factory=lambda: deque(maxlen=RECENT_ANSWERS))
    serial_starts: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT_SERIAL_STARTS))
    firmware_sync: dict[str, Any] | None = None  # the last PROC-004 sync outcome (status, version, attempts)
    firmware_sync_at: float | None = None

    def _roll_day(self) -> None:
        today = date.today()
        if today != self.day:  # counts are per calendar day at the station (local time)
            self.day, self.starts_today, self.refusals_today = today, 0, 0

    def record_start(self, raw: bytes, http_status: int, body: dict[str, Any]) -> None:
        """Note one answer; never raises (the start answer must reach the window whatever happens here)."""
        self._roll_day()
        request = _request_fields(raw)
        found = body.get("data")
        data: dict[str, Any] = found if isinstance(found, dict) else {}
        ok = body.get("status") == "success" and http_status == 200
        answer = StartAnswer(
            at=datetime.now().astimezone().isoformat(timespec="seconds"),
            lot_number=request.get("lot_number"),
            process_id=request.get("process_id"),
            worker_id=request.get("worker_id"),
            http_status=http_status,
            status="success" if ok else "error",
            error_code=None if ok else str(body.get("error_code") or ""),
            message=str(body.get("message") or ""),
            work_order_id=str(data["work_order_id"]) if ok and data.get("work_order_id") else None,
        )
        self.recent.appendleft(answer)
        if not ok:
            self.refusals_today += 1
            return
        self.starts_today += 1
        self.current = {key: data.get(key) for key in ("lot_number", "process_id", "process_name", "worker_id")}
        self.current.update(work_order_id=answer.work_order_id, start_time=data.get("start_time"), at=answer.at)
        serials = data.get("serial_numbers")
        if isinstance(serials, list) and serials:
            self.serial_starts.appendleft(
                {"lot_number": data.get("lot_number"), "printer_id": data.get("printer_id"), "serials": serials}
            )
        sync = data.get("firmware_sync")
        if isinstance(sync, dict):
            self.firmware_sync, self.firmware_sync_at = dict(sync), time.time()

    def snapshot(self) -> dict[str, Any]:
        self._roll_day()
        return {
            "day": self.day.isoformat(),
            "starts_today": self.starts_today,
            "refusals_today": self.refusals_today,
            "current": self.current,
            "recent_answers": [asdict(answer) for answer in self.recent],
            "serial_starts": list(self.serial_starts),
        }


def _request_fields(raw: bytes) -> dict[str, str]:
    try:
        body = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(body, dict):
        return {}
    return {key: str(body[key]) for key in ("lot_number", "process_id", "worker_id") if body.get(key) is not None}
