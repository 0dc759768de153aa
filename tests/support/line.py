"""A running line for acceptance tests: API, ingestor and one gateway per station, as real processes."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from mes_contracts.completion import completion_file_name
from mes_contracts.route import ROUTE, get_step
from tests.support.folders import WorkFolders

SEOUL = ZoneInfo("Asia/Seoul")


@dataclass
class Station(WorkFolders):
    process_id: str
    station_id: str
    work_dir: Path
    gateway_url: str


@dataclass
class Line:
    api_url: str
    stations: dict[str, Station] = field(default_factory=dict)
    auth: httpx.Auth | None = None  # a manager's: it creates LOTs

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.api_url, timeout=15, auth=self.auth)

    def create_lot(self, shift: str = "D", quantity: int = 100) -> str:
        with self.http() as client:
            response = client.post("/api/v1/lots", json={"shift": shift, "target_quantity": quantity})
        assert response.status_code == 201, response.text
        return str(response.json()["data"]["lot_number"])

    def start_via_gateway(
        self, lot: str, process_id: str, worker: str = "W001", at: datetime | None = None
    ) -> httpx.Response:
        station = self.stations[process_id]
        body = start_body(lot, process_id, worker, at)
        deadline = time.monotonic() + 20
        while True:
            response = httpx.post(f"{station.gateway_url}/start", json=body, timeout=20)
            if response.status_code not in (503, 504) or time.monotonic() > deadline:
                return response
            time.sleep(0.2)

    def drop(self, process_id: str, name: str, content: bytes) -> Path:
        station = self.stations[process_id]
        temp = station.pending / f".{name}.tmp"
        temp.write_bytes(content)
        final = station.pending / name
        temp.replace(final)
        return final

    def drop_record(self, record: dict[str, Any], stamp: datetime | None = None) -> str:
        stamp = stamp or datetime.now(SEOUL)
        name = completion_file_name(record["lot_number"], record["process_id"], stamp)
        self.drop(record["process_id"], name, json.dumps(record, ensure_ascii=False).encode())
        return name

    def wait_disposition(self, process_id: str, name: str, timeout: float = 20) -> str:
        station = self.stations[process_id]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (station.completed / name).exists():
                return "completed"
            if (station.error / name).exists():
                return "error"
            time.sleep(0.05)
        raise AssertionError(
            f"{name} still not disposed after {timeout} s; pending: {sorted(p.name for p in station.pending.iterdir())}"
        )

    def lot(self, lot_number: str) -> dict[str, Any]:
        with self.http() as client:
            response = client.get(f"/api/v1/lots/{lot_number}")
        assert response.status_code == 200, response.text
        return dict(response.json()["data"])


def start_body(lot: str, process_id: str, worker: str = "W001", at: datetime | None = None) -> dict[str, Any]:
    moment = (at or datetime.now(SEOUL)).replace(microsecond=0)
    return {
        "lot_number": lot,
        "process_id": process_id,
        "process_name": get_step(process_id).name_ko,
        "worker_id": worker,
        "start_time": moment.isoformat(),
    }


def station_ids() -> dict[str, str]:
    return {step.process_id: f"st{step.sequence:02d}" for step in ROUTE}


def later(seconds: float) -> datetime:
    return (datetime.now(SEOUL) + timedelta(seconds=seconds)).replace(microsecond=0)
