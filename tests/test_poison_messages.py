"""Issue 11, finding 1: a message the centre cannot store is quarantined and answered, never blocking the others.

Through the real gateways, broker and ingestor. A record the contracts let through but PostgreSQL refuses (as a
site constraint the stations cannot know would) is made with a test trigger: any row of a "poisoned" LOT in
process_results or process_runs fails with SQLSTATE 22001, the very error of the audit's 120-character field.
"""

from __future__ import annotations

import asyncio
import json
import random
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client import REGISTRY

from cloud_api.ingestor import supervision
from deploy.localstack.children import ChildProcess, mes_command
from deploy.localstack.service_state import wait_service_online
from deploy.localstack.services import MosquittoServer, PostgresServer, find_free_port
from line_simulator.payloads import completion_record
from mes_contracts.completion import completion_file_name
from mes_contracts.envelope import MessageType, Outcome, ReplyPayload, Source, make_envelope
from mes_contracts.topics import Name, StationAddress, parse_topic
from tests.support.line import SEOUL, Line
from tests.support.mqtt import Requester

INGESTOR_ID = "ingestor-test"  # the session ingestor's client id (tests/conftest.py)
POISON_SQL = """
CREATE TABLE test_poison_lots (lot_id bigint PRIMARY KEY);
CREATE FUNCTION test_poison_row() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM test_poison_lots WHERE lot_id = NEW.lot_id) THEN
        RAISE EXCEPTION 'value too long for a site constraint (test poison)' USING ERRCODE = '22001';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER test_poison_results BEFORE INSERT ON process_results FOR EACH ROW EXECUTE FUNCTION test_poison_row();
CREATE TRIGGER test_poison_runs BEFORE INSERT ON process_runs FOR EACH ROW EXECUTE FUNCTION test_poison_row();
"""
UNPOISON_SQL = """
DROP TRIGGER IF EXISTS test_poison_results ON process_results;
DROP TRIGGER IF EXISTS test_poison_runs ON process_runs;
DROP FUNCTION IF EXISTS test_poison_row();
DROP TABLE IF EXISTS test_poison_lots;
"""


@pytest.fixture(scope="module")
def owner_db(postgres: PostgresServer) -> Iterator[psycopg.Connection]:
    with psycopg.connect(getattr(postgres, "owner_dsn", postgres.dsn), autocommit=True) as conn:
        conn.execute(UNPOISON_SQL)
        conn.execute(POISON_SQL)
        yield conn
        conn.execute(UNPOISON_SQL)


def poison(owner_db: psycopg.Connection, lot: str) -> None:
    owner_db.execute("INSERT INTO test_poison_lots SELECT id FROM lots WHERE lot_number = %s", (lot,))


def drop_completion(line: Line, lot: str, process_id: str, **overrides: Any) -> str:
    end = datetime.now(SEOUL).replace(microsecond=0)
    record = completion_record(
        process_id, lot, "W001", end - timedelta(minutes=1), end, random.Random(lot), **overrides
    )
    name = completion_file_name(lot, process_id, end.replace(tzinfo=None))
    line.drop(process_id, name, json.dumps(record, ensure_ascii=False).encode())
    return name


def started(line: Line, lot: str, process_id: str) -> None:
    response = line.start_via_gateway(lot, process_id)
    assert response.status_code == 200, response.text


def results(db: psycopg.Connection, lot: str, process_id: str) -> int:
    row = db.execute(
        "SELECT count(*) FROM process_results r JOIN lots l ON l.id = r.lot_id "
        "WHERE l.lot_number = %s AND r.process_id = %s",
        (lot, process_id),
    ).fetchone()
    assert row is not None
    return int(row[0])


def dead_letters_of(db: psycopg.Connection, lot: str) -> list[Any]:
    return db.execute(
        "SELECT message_id, message_type, source_station, topic, payload, error_code, error_class, delivery_count "
        "FROM dead_letters WHERE position(%s::bytea IN payload) > 0 ORDER BY id",
        (lot.encode(),),
    ).fetchall()


@contextmanager
def restarted(
    ingestor: ChildProcess, central_env: dict[str, str], broker: MosquittoServer, logs_dir: Path
) -> Iterator[int]:
    """The session ingestor stopped and started again (same client id and session), serving /metrics; the
    session one is back afterwards. Yields the metrics port."""
    port = find_free_port()
    ingestor.stop()
    env = {**central_env, "MES_INGESTOR_CLIENT_ID": INGESTOR_ID, "MES_INGESTOR_METRICS_PORT": str(port)}
    child = ChildProcess("ingestor-restarted", mes_command("ingest"), env, logs_dir / "ingestor-restarted.log")
    child.start()
    try:
        wait_service_online(broker.port, INGESTOR_ID)
        yield port
    finally:
        child.stop()
        ingestor.start()
        wait_service_online(broker.port, INGESTOR_ID)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def test_poison_completion_is_quarantined_while_every_other_station_flows(
    line: Line,
    db: psycopg.Connection,
    owner_db: psycopg.Connection,
    broker: MosquittoServer,
    ingestor: ChildProcess,
    central_env: dict[str, str],
    logs_dir: Path,
) -> None:
    bad, other, first, second = (line.create_lot() for _ in range(4))
    for lot in (bad, other, first, second):
        started(line, lot, "PROC-001")
    for name in [drop_completion(line, lot, "PROC-001") for lot in (bad, other)]:
        assert line.wait_disposition("PROC-001", name) == "completed"
    for lot in (bad, other):
        started(line, lot, "PROC-002")
    poison(owner_db, bad)

    # Together: the poison at st02 and valid files at st02 and st01.
    poisoned = drop_completion(line, bad, "PROC-002")
    valid = [
        ("PROC-002", other, drop_completion(line, other, "PROC-002")),
        ("PROC-001", first, drop_completion(line, first, "PROC-001")),
        ("PROC-001", second, drop_completion(line, second, "PROC-001")),
    ]

    assert line.wait_disposition("PROC-002", poisoned) == "error"
    report = (line.stations["PROC-002"].error / f"{poisoned}.error.log").read_text()
    assert "error_code: MESSAGE_NOT_STORABLE" in report and "StringDataRightTruncation" in report
    for process_id, lot, name in valid:
        assert line.wait_disposition(process_id, name) == "completed"
        assert results(db, lot, process_id) == 1
    assert results(db, bad, "PROC-002") == 0

    letters = dead_letters_of(db, bad)
    assert len(letters) == 1
    message_id, message_type, station, topic, payload, code, error_class, deliveries = letters[0]
    assert (message_type, station, code) == ("process.completed", "mes/v1/KR/L1/st02", "MESSAGE_NOT_STORABLE")
    assert error_class.endswith("StringDataRightTruncation") and deliveries == 1
    stored = db.execute(
        "SELECT outcome, response FROM processed_messages WHERE message_id = %s", (message_id,)
    ).fetchone()
    assert stored is not None and stored[0] == "rejected" and stored[1]["error_code"] == "MESSAGE_NOT_STORABLE"
    audited = db.execute(
        "SELECT count(*) FROM audit_log WHERE action = 'message.dead_letter' AND entity_key = %s", (str(message_id),)
    ).fetchone()
    assert audited == (1,)

    # Sent again after an ingestor restart (as a station that never got the answer would): the same answer.
    with restarted(ingestor, central_env, broker, logs_dir) as metrics_port:
        reply = resend(broker, topic, bytes(payload), message_id)
        assert reply.in_reply_to == message_id and reply.outcome is Outcome.REJECTED
        assert reply.body == stored[1]  # the answer stored with the dead letter, not a new verdict
        assert "mes_ingestor_healthy 1.0" in scrape(metrics_port)
    again = db.execute(
        "SELECT count(*), max(delivery_count) FROM dead_letters WHERE message_id = %s", (message_id,)
    ).fetchone()
    assert again == (1, 1)  # answered from processed_messages: no second row


def resend(broker: MosquittoServer, topic: str, payload: bytes, message_id: uuid.UUID) -> ReplyPayload:
    station = parse_topic(topic).address
    requester = Requester(broker.port, station.reply(), f"test-{uuid.uuid4().hex[:8]}")
    try:
        props = {"ResponseTopic": station.reply(), "CorrelationData": str(message_id).encode()}
        publish_raw(requester, topic, payload, props)
        return requester.reply()
    finally:
        requester.close()


def publish_raw(requester: Requester, topic: str, payload: bytes, props: dict[str, Any] | None = None) -> None:
    properties = Properties(PacketTypes.PUBLISH)
    for key, value in (props or {}).items():
        setattr(properties, key, value)
    requester.client.publish(topic, payload, qos=1, properties=properties).wait_for_publish(5)


def test_poison_start_is_answered_not_storable(
    line: Line, db: psycopg.Connection, owner_db: psycopg.Connection
) -> None:
    lot = line.create_lot()
    poison(owner_db, lot)
    response = line.start_via_gateway(lot, "PROC-001")
    assert response.status_code == 422 and response.json()["error_code"] == "MESSAGE_NOT_STORABLE", response.text
    letters = dead_letters_of(db, lot)
    assert [(row[1], row[5]) for row in letters] == [("process.start.request", "MESSAGE_NOT_STORABLE")]
    healthy = started_after_poison(line)
    assert healthy.status_code == 200  # the next start at the same station is stored as usual


def started_after_poison(line: Line) -> Any:
    return line.start_via_gateway(line.create_lot(), "PROC-001")


STATION = StationAddress("KR", "L1", "stpoison")


@pytest.fixture
def requester(broker: MosquittoServer, ingestor: ChildProcess) -> Iterator[Requester]:
    client = Requester(broker.port, STATION.reply(), f"test-{uuid.uuid4().hex[:8]}")
    yield client
    client.close()


def test_unreadable_message_is_answered_and_dead_lettered(requester: Requester, db: psycopg.Connection) -> None:
    garbage = f"not an envelope {uuid.uuid4()}".encode()
    publish_raw(requester, STATION.event(Name.PROCESS_COMPLETED), garbage, {"ResponseTopic": STATION.reply()})
    reply = requester.reply()
    assert reply.outcome is Outcome.REJECTED and reply.body["error_code"] == "INVALID_REQUEST"
    row = db.execute(
        "SELECT letter_key, message_id, source_station, error_code FROM dead_letters WHERE payload = %s", (garbage,)
    ).fetchone()
    assert row is not None and row[0].startswith("sha256:") and row[1] is None
    assert row[2:] == ("mes/v1/KR/L1/stpoison", "INVALID_REQUEST")


def test_oversized_message_is_refused_without_being_stored(requester: Requester, db: psycopg.Connection) -> None:
    record = {"lot_number": "WF-KR-261205D-999", "padding": "x" * (1024 * 1024 + 100 * 1024)}
    envelope = make_envelope(
        MessageType.PROCESS_COMPLETED,
        Source.of(STATION, "gw-test"),
        1,
        {"record": record, "file_name": None, "sha256": None},
    )
    requester.send(STATION.event(Name.PROCESS_COMPLETED), envelope)
    reply = requester.reply()
    assert reply.in_reply_to == envelope.message_id
    assert reply.outcome is Outcome.REJECTED and reply.body["error_code"] == "PAYLOAD_TOO_LARGE"
    row = db.execute(
        "SELECT payload_size, length(payload), error_code, source_station FROM dead_letters WHERE message_id = %s",
        (envelope.message_id,),
    ).fetchone()
    assert row is not None and row[0] == len(envelope.to_bytes()) and row[1] <= 1024 * 1024
    assert row[2] == "PAYLOAD_TOO_LARGE"
    assert row[3] == "mes/v1/KR/L1/stpoison", "the topic names the station even when the body is not read"


async def test_a_dying_storing_task_is_restarted_and_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervision, "RESTART_MIN_S", 0.05)
    health = supervision.Health()
    states: list[dict[str, Any]] = []
    runs = 0
    running = asyncio.Event()

    async def task() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("batch task died")
        running.set()
        await asyncio.Event().wait()

    async def publish() -> None:
        states.append(json.loads(health.state("ingestor", True)))

    before = REGISTRY.get_sample_value("mes_ingestor_task_restarts_total", {"task": "demo"}) or 0.0
    supervisor = asyncio.create_task(supervision.supervise("demo", task, health, publish))
    await asyncio.wait_for(running.wait(), 5)
    await asyncio.sleep(0)
    supervisor.cancel()
    assert runs == 2
    assert states[0]["healthy"] is False and states[0]["restarting"] == ["demo"]
    assert "batch task died" in states[0]["last_error"]
    assert states[-1]["healthy"] is True and states[-1]["restarts"] == 1
    assert REGISTRY.get_sample_value("mes_ingestor_task_restarts_total", {"task": "demo"}) == before + 1
