"""Test helpers for labels: emulated printers as child processes, a stand-in station, API and DB shortcuts."""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt

from deploy.localstack.children import ChildProcess, mes_command, wait_http_ok
from deploy.localstack.common import find_free_port
from edge_gateway.printing.printer import print_program
from mes_contracts.envelope import Envelope, MessageType, Source, make_envelope
from mes_contracts.labels import PrinterState, PrintJob, PrintMode, PrintResult, PrintStatus
from mes_contracts.topics import Name, StationAddress


@dataclass
class EmulatedPrinter:
    """`mes printer-emulator` as a child process, steered through its HTTP control port."""

    name: str
    out_dir: Path
    log_dir: Path
    port: int = field(default_factory=find_free_port)
    control_port: int = field(default_factory=find_free_port)
    child: ChildProcess | None = None

    def start(self) -> EmulatedPrinter:
        argv = mes_command(
            "printer-emulator",
            "--port",
            str(self.port),
            "--control-port",
            str(self.control_port),
            "--out-dir",
            str(self.out_dir),
            "--dpi",
            "203",
        )
        self.child = ChildProcess(f"printer-{self.name}", argv, {}, self.log_dir / f"printer-{self.name}.log").start()
        wait_http_ok(f"{self.control_url}/state", 30, self.child)
        return self

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"

    def set_state(self, state: PrinterState) -> None:
        response = httpx.put(f"{self.control_url}/state", json={"state": state.value}, timeout=10)
        assert response.status_code == 200, response.text

    def labels(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.control_url}/labels", timeout=10) as answer:
            return list(json.loads(answer.read())["labels"])

    def barcodes(self) -> list[str | None]:
        return [entry.get("barcode") for entry in self.labels()]

    def file(self, name: str) -> bytes:
        with urllib.request.urlopen(f"{self.control_url}/labels/{name}", timeout=10) as answer:
            return bytes(answer.read())

    def wait_barcodes(self, wanted: list[str], timeout: float = 60) -> list[dict[str, Any]]:
        """The labels whose barcode is in `wanted`, once all of them have been printed."""
        deadline = time.monotonic() + timeout
        found: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            found = [entry for entry in self.labels() if entry.get("barcode") in set(wanted)]
            if {entry["barcode"] for entry in found} >= set(wanted):
                return found
            time.sleep(0.2)
        raise AssertionError(f"{self.name}: {len(found)} of {len(wanted)} labels after {timeout} s")

    def printer_body(self, printer_id: str, station: str, purposes: list[str]) -> dict[str, Any]:
        return {
            "printer_id": printer_id,
            "station": station,
            "transport": "tcp",
            "host": "127.0.0.1",
            "port": self.port,
            "purposes": purposes,
            "dpi": 203,
            "width_mm": 60,
            "height_mm": 40,
        }


class StandInStation:
    """Plays a station gateway's print side for one station: takes cmd/print-label, prints on the real printer
    named in the job (real socket, real status query), publishes evt/print-result. `answer=False`: silent."""

    def __init__(self, broker_port: int, station: str, site: str = "KR", line: str = "L1") -> None:
        self.address = StationAddress(site, line, station)
        self.source = Source.of(self.address, f"gw-{station}")
        self.answer = True
        self.jobs: queue.Queue[PrintJob] = queue.Queue()
        self.results: list[PrintResult] = []
        self._seen: set[uuid.UUID] = set()
        self._seq = 0
        self._lock = threading.Lock()
        self._todo: queue.Queue[PrintJob | None] = queue.Queue()
        threading.Thread(target=self._worker, name=f"stand-in-{station}", daemon=True).start()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"stand-in-{station}-{uuid.uuid4()}", protocol=mqtt.MQTTv5
        )
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker_port)
        self.client.loop_start()
        result, _ = self.client.subscribe(self.address.command(Name.PRINT_LABEL), qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS
        time.sleep(0.3)

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        envelope = Envelope.from_bytes(bytes(message.payload))
        assert envelope.type is MessageType.LABEL_PRINT_JOB
        job = PrintJob.model_validate(envelope.payload)
        with self._lock:
            if job.job_id in self._seen:  # the gateway de-duplicates by job id too
                return
            self._seen.add(job.job_id)
        self.jobs.put(job)
        if self.answer:
            self._todo.put(job)

    def _worker(self) -> None:
        # One printer queue: labels print one after the other, in the order the jobs came.
        while True:
            job = self._todo.get()
            if job is None:
                return
            self._print(job)

    def _print(self, job: PrintJob) -> None:
        outcome = print_program(job.printer, job.program, timeout=3)
        status = (
            PrintStatus.PRINTED
            if outcome.printed
            else (PrintStatus.FAILED if job.mode is PrintMode.IMMEDIATE else PrintStatus.WAITING)
        )
        result = PrintResult(
            job_id=job.job_id,
            printer_id=job.printer.printer_id,
            status=status,
            printer_state=outcome.state,
            error_code=outcome.error_code,
            detail=outcome.detail,
            print_time=datetime.now(UTC) if outcome.printed else None,
        )
        self.publish(result)

    def publish(self, result: PrintResult) -> Envelope:
        with self._lock:
            self._seq += 1
            envelope = make_envelope(
                MessageType.LABEL_PRINT_RESULT, self.source, self._seq, result.model_dump(mode="json")
            )
            self.results.append(result)
        info = self.client.publish(self.address.event(Name.PRINT_RESULT), envelope.to_bytes(), qos=1)
        info.wait_for_publish(5)
        return envelope

    def close(self) -> None:
        self._todo.put(None)
        self.client.loop_stop()
        self.client.disconnect()


def register(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    """Register a printer (or bring it in line with `body` when the id exists); `client` acts as an admin."""
    response = client.post("/api/v1/printers", json=body)
    if response.status_code == 409:
        changes = {k: v for k, v in body.items() if k != "printer_id"}
        response = client.patch(f"/api/v1/printers/{body['printer_id']}", json={**changes, "active": True})
    assert response.status_code in (200, 201), response.text
    return dict(response.json()["data"])


def deactivate(client: httpx.Client, printer_id: str) -> None:
    """So later test modules' LOTs and starts do not queue labels on a printer nobody listens for."""
    client.patch(f"/api/v1/printers/{printer_id}", json={"active": False})


def advance(client: httpx.Client, lot: str, before: str = "PROC-007", failing: frozenset[str] = frozenset()) -> None:
    """Start and complete every process of `lot` before `before` over REST; `failing` processes report FAIL."""
    import random
    from datetime import timedelta

    from line_simulator.payloads import completion_record
    from mes_contracts.route import ROUTE
    from tests.support.line import SEOUL, start_body

    for step in ROUTE:
        if step.process_id == before:
            return
        now = datetime.now(SEOUL).replace(microsecond=0)
        started = client.post(
            "/api/v1/process/start", json=start_body(lot, step.process_id, "W001", now - timedelta(minutes=5))
        )
        assert started.status_code == 200, started.text
        record = completion_record(
            step.process_id, lot, "W002", now - timedelta(minutes=5), now, random.Random(7), step.process_id in failing
        )
        completed = client.post("/api/v1/process/complete", json=record)
        assert completed.status_code == 200, completed.text


def create_lot(client: httpx.Client, quantity: int = 100, printer_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"shift": "D", "target_quantity": quantity}
    if printer_id is not None:
        body["printer_id"] = printer_id
    response = client.post("/api/v1/lots", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json()["data"])
