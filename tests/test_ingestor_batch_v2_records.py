"""Envelope v2 for print results and measurements: each record stored through its use case (one transaction per
record), one BatchReply per message; and the API's print-and-wait listener finds its job's result inside a v2
print-result batch (a gateway batches results when several are queued)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import paho.mqtt.client as mqtt
import psycopg
import pytest

from cloud_api.http.mqtt_bridge import MqttBridge
from cloud_api.labels.service import Delivered
from cloud_api.settings import CentralSettings
from deploy.localstack.children import ChildProcess
from deploy.localstack.services import MosquittoServer
from mes_contracts.batch import BatchEnvelope, make_batch
from mes_contracts.envelope import Envelope, MessageType, Source, make_envelope
from mes_contracts.labels import LabelType, PrinterConfig, PrinterState, PrintJob, PrintMode, PrintResult, PrintStatus
from mes_contracts.measurement import Curve, SampleSource, Series, chunk_samples
from mes_contracts.topics import Name, StationAddress
from tests.support.auth import RoleAuth
from tests.test_ingestor_batch_v2 import BatchClient, outcomes

STATION = StationAddress("KR", "L1", "stbatch3")
SOURCE = Source.of(STATION, "gw-batch3")
PRINTER = "V2-PRINTER"
T0 = datetime(2026, 12, 5, 1, 0, 0, tzinfo=UTC)


@pytest.fixture
def station(broker: MosquittoServer, ingestor: ChildProcess, db: psycopg.Connection) -> Iterator[BatchClient]:
    db.execute(
        "INSERT INTO station_processes (site, line, station, process_id, created_by) "
        "VALUES ('KR', 'L1', %s, 'PROC-006', 'test') ON CONFLICT DO NOTHING",
        (STATION.station,),
    )
    client = BatchClient(broker.port, STATION)
    yield client
    client.close()


@pytest.fixture
def lot(api_url: str, auth: RoleAuth) -> str:
    created = httpx.post(f"{api_url}/api/v1/lots", json={"shift": "D"}, timeout=10, auth=auth.manager)
    return str(created.json()["data"]["lot_number"])


def dispatched_job(db: psycopg.Connection, lot: str) -> uuid.UUID:
    """A LOT label job sent to STATION, as the dispatcher leaves it (immediate: the dispatcher never resends it)."""
    db.execute(
        # Inactive: no label of a LOT that a later test creates may be sent to this station, which has no gateway.
        "INSERT INTO printers (printer_id, station, transport, host, active) "
        "VALUES (%s, %s, 'tcp', '127.0.0.1', false) ON CONFLICT (printer_id) DO NOTHING",
        (PRINTER, STATION.station),
    )
    job_id = uuid.uuid4()
    db.execute(
        "INSERT INTO label_print_jobs (job_id, printer_id, label_type, lot_id, label_key, mode, requested_by, status, "
        "target) SELECT %s, %s, 'LOT', id, lot_number, 'immediate', 'test', 'dispatched', %s FROM lots "
        "WHERE lot_number = %s",
        (job_id, PRINTER, STATION.prefix, lot),
    )
    return job_id


def result(job_id: uuid.UUID, status: PrintStatus, seq: int) -> Envelope:
    state = PrinterState.PAPER_OUT if status is PrintStatus.WAITING else PrinterState.READY
    body = PrintResult(job_id=job_id, printer_id=PRINTER, status=status, printer_state=state)
    return make_envelope(MessageType.LABEL_PRINT_RESULT, SOURCE, seq, body.model_dump(mode="json"))


def test_a_print_result_batch_is_recorded_per_record_in_order(
    station: BatchClient, db: psycopg.Connection, lot: str
) -> None:
    job = dispatched_job(db, lot)
    records = [
        result(job, PrintStatus.WAITING, 1),
        result(job, PrintStatus.PRINTED, 2),
        result(uuid.uuid4(), PrintStatus.FAILED, 3),
    ]
    records.append(make_envelope(MessageType.LABEL_PRINT_RESULT, SOURCE, 4, {"job_id": "not-a-job"}))
    batch = make_batch(records)
    reply = station.batch(batch, Name.PRINT_RESULT)
    assert outcomes(reply) == ["accepted", "accepted", "rejected", "rejected"], reply.replies
    assert [r.body.get("error_code") for r in reply.replies[2:]] == ["NOT_FOUND", "INVALID_REQUEST"]
    assert reply.replies[1].body["data"] == {"job_id": str(job), "status": "printed"}
    stored = db.execute("SELECT status, result_message_id FROM label_print_jobs WHERE job_id = %s", (job,))
    assert stored.fetchone() == ("printed", records[1].message_id)

    again = station.batch(make_batch(records[:2]), Name.PRINT_RESULT)  # redelivered: the first answers
    assert outcomes(again) == ["duplicate", "duplicate"]
    wrong_topic = station.batch(make_batch(records[:1]), Name.MEASUREMENT)  # a print result where samples go
    assert outcomes(wrong_topic) == ["rejected"] and wrong_topic.replies[0].body["error_code"] == "INVALID_REQUEST"


def result_of_status(job_id: uuid.UUID, status: PrintStatus = PrintStatus.FAILED) -> PrintResult:
    return PrintResult(job_id=job_id, printer_id=PRINTER, status=status, printer_state=PrinterState.OFFLINE)


def _curve(lot: str, n: int) -> Curve:
    times = [i * 1000 for i in range(n)]
    return Curve(lot, None, "PROC-006", T0, (Series("force", "kgf", "T52_P200", times, [float(i) for i in times]),))


def test_a_measurement_batch_is_stored_once_per_record(station: BatchClient, db: psycopg.Connection, lot: str) -> None:
    chunks = chunk_samples(_curve(lot, 3000), SampleSource.CURVE, "v2.curve.csv", "1" * 64, limit=1000)
    records = [
        make_envelope(MessageType.MEASUREMENT, SOURCE, i, c.model_dump(mode="json")) for i, c in enumerate(chunks)
    ]
    bad = make_envelope(MessageType.MEASUREMENT, SOURCE, 9, {**chunks[0].model_dump(mode="json"), "lot_number": "x"})
    batch = make_batch([*records, bad])
    reply = station.batch(batch, Name.MEASUREMENT)
    assert outcomes(reply) == ["accepted"] * 3 + ["rejected"], reply.replies
    assert reply.replies[3].body["error_code"] == "INVALID_MEASUREMENT_DATA"
    counts = db.execute(
        "SELECT message_id, count(*) FROM measurement_samples WHERE message_id = ANY(%s) GROUP BY 1",
        ([r.message_id for r in records],),
    ).fetchall()
    assert sorted(c for _, c in counts) == [1000, 1000, 1000]
    replayed = BatchEnvelope.model_validate({**batch.model_dump(mode="json"), "message_id": uuid.uuid4()})
    again = station.batch(replayed, Name.MEASUREMENT)
    assert outcomes(again) == ["duplicate"] * 3 + ["rejected"]
    total = db.execute(
        "SELECT count(*) FROM measurement_samples WHERE message_id = ANY(%s)", ([r.message_id for r in records],)
    )
    assert total.fetchone() == (3000,)


def test_the_api_print_waiter_finds_its_result_in_a_v2_batch(broker: MosquittoServer) -> None:
    printer = PrinterConfig(printer_id=PRINTER, station=STATION.station, transport="tcp", host="127.0.0.1")
    job = PrintJob(
        job_id=uuid.uuid4(),
        printer=printer,
        label_type=LabelType.LOT,
        label_key="WF-KR-240101D-001",
        program="^XA^XZ",
        mode=PrintMode.IMMEDIATE,
        created_at=datetime.now(UTC),
        expires_at=datetime.now(UTC) + timedelta(seconds=10),
    )

    def answer_with_a_batch(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        ordered = Envelope.from_bytes(bytes(message.payload))
        job_id = uuid.UUID(ordered.payload["job_id"])
        results = [
            result_of_status(uuid.uuid4()),  # another job's result, queued at the station
            PrintResult(
                job_id=job_id, printer_id=PRINTER, status=PrintStatus.WAITING, printer_state=PrinterState.PAPER_OUT
            ),
            PrintResult(
                job_id=job_id, printer_id=PRINTER, status=PrintStatus.PRINTED, printer_state=PrinterState.READY
            ),
        ]
        envelopes = [
            make_envelope(MessageType.LABEL_PRINT_RESULT, SOURCE, i, r.model_dump(mode="json"))
            for i, r in enumerate(results)
        ]
        client.publish(STATION.event(Name.PRINT_RESULT), make_batch(envelopes).to_bytes(), qos=1)

    fake_station = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"st-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
    )
    fake_station.on_message = answer_with_a_batch
    fake_station.connect("127.0.0.1", broker.port)
    subscribed = threading.Event()
    fake_station.on_subscribe = lambda *args: subscribed.set()
    fake_station.loop_start()
    fake_station.subscribe(STATION.command(Name.PRINT_LABEL), qos=1)
    assert subscribed.wait(10)
    settings = CentralSettings(database_url="postgresql+psycopg://unused@127.0.0.1/unused", mqtt_port=broker.port)

    async def print_and_wait() -> Delivered | None:
        bridge = MqttBridge(settings, f"api-v2-{uuid.uuid4().hex[:8]}")
        await bridge.start()
        try:
            return await bridge.print_and_wait(STATION, job, 10)
        finally:
            await bridge.stop()

    try:
        delivered = asyncio.run(print_and_wait())
    finally:
        fake_station.disconnect()
        fake_station.loop_stop()
    assert delivered is not None
    assert delivered.result.job_id == job.job_id and delivered.result.status is PrintStatus.PRINTED
