"""The centre's side of label printing for gateway tests: send PrintJobs over MQTT, collect PrintResults; printers
as `mes printer-emulator` child processes; a station gateway as a `mes gateway` child process."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from deploy.localstack.children import ChildProcess, mes_command, wait_http_ok
from deploy.localstack.services import find_free_port
from mes_contracts.batch import BatchEnvelope, envelope_version
from mes_contracts.envelope import Envelope, MessageType, Source, make_envelope
from mes_contracts.labels import LabelType, PrinterConfig, PrinterState, PrintJob, PrintMode, PrintResult, PrintStatus
from mes_contracts.topics import Name, StationAddress
from tests.support.fake_centre import answer_batch

T = TypeVar("T")
CENTRE = Source(site="central", line="services", station="label-test", gateway_id="label-test")


def eventually(probe: Callable[[], T | None], timeout: float = 20.0, what: str = "condition") -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def zpl(key: str) -> str:
    """A small label whose first text field is `key` (the emulator's index shows it as `text`)."""
    return f"^XA^CI28^FO30,30^A0N,40,40^FD{key}^FS^FO30,90^BCN,60,N,N,N^FD{key}^FS^XZ"


def make_job(
    printer: PrinterConfig,
    key: str,
    mode: PrintMode = PrintMode.QUEUED,
    expires_at: datetime | None = None,
    job_id: uuid.UUID | None = None,
) -> PrintJob:
    return PrintJob(
        job_id=job_id or uuid.uuid4(),
        printer=printer,
        label_type=LabelType.SERIAL,
        label_key=key,
        program=zpl(key),
        mode=mode,
        created_at=datetime.now(UTC),
        expires_at=expires_at,
    )


def immediate(printer: PrinterConfig, key: str, timeout_s: float = 10.0) -> PrintJob:
    return make_job(printer, key, PrintMode.IMMEDIATE, datetime.now(UTC) + timedelta(seconds=timeout_s))


@dataclass
class Received:
    envelope: Envelope
    result: PrintResult


class PrintCentre:
    """Publishes cmd/print-label like the central dispatcher and collects evt/print-result.

    A persistent session (clean start off, session expiry), so results published while this client reconnects
    after a broker restart still reach it.
    """

    def __init__(self, port: int, station: StationAddress, client_id: str | None = None) -> None:
        self.station = station
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._topic = station.event(Name.PRINT_RESULT)
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"centre-{uuid.uuid4()}", protocol=mqtt.MQTTv5
        )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *args: self._connected.clear()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 2)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise RuntimeError("the test centre could not connect to the broker")

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        client.subscribe(self._topic, qos=1)
        self._connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        raw = bytes(message.payload)
        batch = BatchEnvelope.from_bytes(raw) if envelope_version(raw) == 2 else None  # results the gateway queued
        envelopes = [batch.read_record(i) for i in range(len(batch.records))] if batch else [Envelope.from_bytes(raw)]
        for envelope in envelopes:
            assert envelope.type is MessageType.LABEL_PRINT_RESULT, envelope.type
            with self._lock:
                self.received.append(Received(envelope, PrintResult.model_validate(envelope.payload)))
        if batch is not None:  # a v2 message asks for an answer (like the ingestor's: each record stored)
            answer_batch(client, message, batch)

    def send(self, job: PrintJob, message_id: str | None = None) -> Envelope:
        envelope = make_envelope(
            MessageType.LABEL_PRINT_JOB, CENTRE, 0, job.model_dump(mode="json"), message_id=message_id
        )
        self.publish(envelope.to_bytes())
        return envelope

    def publish(self, payload: bytes) -> None:
        info = self.client.publish(self.station.command(Name.PRINT_LABEL), payload, qos=1)
        info.wait_for_publish(10)
        assert info.is_published(), "the broker did not take the print job"

    # -- what came back -------------------------------------------------------------------------------------

    def results(self) -> list[PrintResult]:
        """Distinct results in arrival order (a re-published one, same message id, counts once)."""
        with self._lock:
            seen: set[uuid.UUID] = set()
            out = []
            for item in self.received:
                if item.envelope.message_id not in seen:
                    seen.add(item.envelope.message_id)
                    out.append(item.result)
            return out

    def of(self, job: PrintJob) -> list[PrintResult]:
        return [r for r in self.results() if r.job_id == job.job_id]

    def final(self, job: PrintJob) -> PrintResult | None:
        done = [r for r in self.of(job) if r.status is not PrintStatus.WAITING]
        return done[-1] if done else None

    def wait_final(self, jobs: list[PrintJob], timeout: float = 30.0) -> list[PrintResult]:
        def probe() -> list[PrintResult] | None:
            finals = [self.final(job) for job in jobs]
            return None if any(f is None for f in finals) else [f for f in finals if f is not None]

        return eventually(probe, timeout, f"final results of {len(jobs)} job(s)")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@dataclass
class Printer:
    """A `mes printer-emulator` child process (ZPL) with its PrinterConfig and HTTP control."""

    printer_id: str
    station: str
    root: Path
    port: int = field(default_factory=find_free_port)
    control_port: int = field(default_factory=find_free_port)
    child: ChildProcess | None = None

    @property
    def config(self) -> PrinterConfig:
        return PrinterConfig(
            printer_id=self.printer_id, station=self.station, transport="tcp", host="127.0.0.1", port=self.port
        )

    @property
    def control(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"

    def start(self, state: PrinterState = PrinterState.READY) -> Printer:
        argv = mes_command(
            "printer-emulator",
            "--port",
            str(self.port),
            "--control-port",
            str(self.control_port),
            "--out-dir",
            str(self.root),
            "--state",
            state.value,
        )
        self.child = ChildProcess(f"printer-{self.printer_id}", argv, {}, self.root / "emulator.log").start()
        wait_http_ok(f"{self.control}/state", 30, self.child)
        return self

    def set_state(self, state: PrinterState) -> None:
        response = httpx.put(f"{self.control}/state", json={"state": state.value}, timeout=5)
        assert response.status_code == 200, response.text

    def labels(self) -> list[str]:
        """The text of every label printed so far, in printing order (read from the emulator's index)."""
        index = self.root / "labels" / "index.jsonl"
        try:
            lines = index.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        return [str(json.loads(line)["text"]) for line in lines if line.strip()]

    def held(self) -> int:
        return int(httpx.get(f"{self.control}/state", timeout=5).json()["held"])

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()


@dataclass
class GatewayProcess:
    """`mes gateway` for one station as a child process, with fast print retries for the tests."""

    station: StationAddress
    work_dir: Path
    broker_port: int
    local_port: int = field(default_factory=find_free_port)
    child: ChildProcess | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.local_port}"

    def start(self) -> GatewayProcess:
        env = {
            "MES_GW_STATION": self.station.station,
            "MES_GW_SITE": self.station.site,
            "MES_GW_LINE": self.station.line,
            "MES_GW_WORK_DIR": str(self.work_dir),
            "MES_GW_MQTT_PORT": str(self.broker_port),
            "MES_GW_LOCAL_PORT": str(self.local_port),
            "MES_GW_PRINT_RETRY_S": "0.3",
            "MES_GW_PRINT_RETRY_MAX_S": "1.0",
            "MES_GW_PRINT_TIMEOUT_S": "3",
            "MES_GW_STATE_INTERVAL_S": "60",
        }
        self.starts += 1
        self.child = ChildProcess(
            f"gateway-{self.station.station}",
            mes_command("gateway"),
            env,
            self.work_dir.parent / f"gateway-{self.station.station}.log",
        ).start()
        wait_http_ok(f"{self.url}/status", 30, self.child)
        return self

    def status(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/status", timeout=5).json())

    def queue(self, printer_id: str) -> dict[str, Any]:
        return dict((self.status().get("print_queue") or {}).get("printers", {}).get(printer_id) or {})

    def wait_connected(self, timeout: float = 30.0) -> None:
        eventually(lambda: self.status().get("connected"), timeout, "the gateway's broker connection")

    def kill(self) -> None:
        assert self.child is not None
        self.child.kill()

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()
