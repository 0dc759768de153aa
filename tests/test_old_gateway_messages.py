"""Old gateways keep working against a new centre (issue 17 point 5, rolling upgrade order in docs/ops/upgrade.md).

A start request and a completion exactly as a gateway of the previous release (90aa2f3) sent them (bytes made by
that release's code: tests/fixtures/old_release/make_messages.py) go through the real broker to the real ingestor
and are stored and answered. An envelope of an unknown future version is refused alone: answered, dead-lettered,
and the next message flows.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from deploy.localstack.children import ChildProcess
from deploy.localstack.services import MosquittoServer
from mes_contracts.envelope import Outcome, ReplyPayload
from mes_contracts.topics import StationAddress
from tests.support.mqtt import Requester

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "old_release"
MANIFEST = json.loads((FIXTURES / "messages.json").read_text())
STATION = StationAddress("KR", "L1", "st90")
LOT = MANIFEST["lot_number"]


def _message(kind: str) -> tuple[str, bytes]:
    """(topic, bytes) of the old release's message of this type, unchanged."""
    entry = next(m for m in MANIFEST["messages"] if m["type"] == kind)
    return entry["topic"], (FIXTURES / entry["file"]).read_bytes()


@pytest.fixture
def old_station(db: psycopg.Connection) -> None:
    """Station st90 may run PROC-001 (as `mes station allow` does); the LOT the old messages name, with serials."""
    db.execute(
        "INSERT INTO station_processes (site, line, station, process_id, created_by) "
        "VALUES ('KR', 'L1', 'st90', 'PROC-001', 'test') ON CONFLICT DO NOTHING"
    )
    db.execute(
        "INSERT INTO lots (lot_number, product_model_id, target_quantity, shift, production_date, sequence, status, "
        "created_by) SELECT %s, id, 2, 'D', '2026-11-20', 901, 'CREATED', 'test' FROM product_models "
        "WHERE model_code = 'WF-WAIST-01' ON CONFLICT (lot_number) DO NOTHING",
        (LOT,),
    )
    db.execute(
        "INSERT INTO serials (serial_number, lot_id, sequence) SELECT %s || '-' || lpad(n::text, 4, '0'), l.id, n "
        "FROM lots l, generate_series(1, 2) n WHERE l.lot_number = %s ON CONFLICT DO NOTHING",
        (LOT, LOT),
    )


@pytest.fixture
def requester(broker: MosquittoServer, ingestor: ChildProcess, old_station: None) -> Iterator[Requester]:
    client = Requester(broker.port, STATION.reply(), f"test-old-{uuid.uuid4().hex[:8]}")
    yield client
    client.close()


def _publish(requester: Requester, topic: str, raw: bytes, message_id: str) -> ReplyPayload:
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = STATION.reply()
    props.CorrelationData = message_id.encode()
    requester.client.publish(topic, raw, qos=1, properties=props).wait_for_publish(5)
    return requester.reply(15)


def _stored(db: psycopg.Connection, message_id: str) -> Any:
    return db.execute(
        "SELECT outcome, http_status, source_station FROM processed_messages WHERE message_id = %s", (message_id,)
    ).fetchone()


def test_fixtures_are_the_old_release_v1_envelopes() -> None:
    assert MANIFEST["release"] == "90aa2f3" and MANIFEST["schema"] == "0007"
    for entry in MANIFEST["messages"]:
        envelope = json.loads((FIXTURES / entry["file"]).read_bytes())
        assert envelope["v"] == 1 and envelope["type"] == entry["type"]
        assert envelope["source"]["station"] == "st90" and entry["topic"].startswith(STATION.prefix + "/")


@pytest.mark.plain_pg
def test_old_start_and_completion_are_stored_and_answered_and_a_future_version_is_refused_alone(
    requester: Requester, db: psycopg.Connection
) -> None:
    topic, raw = _message("process.start.request")
    start_id = json.loads(raw)["message_id"]
    reply = _publish(requester, topic, raw, start_id)
    assert str(reply.in_reply_to) == start_id
    assert reply.outcome is Outcome.ACCEPTED, reply.body
    assert reply.body["data"]["lot_number"] == LOT and reply.body["data"]["work_order_id"].startswith("WO-")
    assert _stored(db, start_id) == ("accepted", 200, STATION.prefix)

    # A gateway newer than this centre (v 99): refused with a clear answer of its own, kept as a dead letter.
    future = json.loads(raw)
    future.update(v=99, message_id=str(uuid.uuid4()), seq=43)
    future_raw = json.dumps(future).encode()
    refused = _publish(requester, topic, future_raw, future["message_id"])
    assert str(refused.in_reply_to) == future["message_id"]
    code = "UNSUPPORTED_MESSAGE_VERSION"
    assert refused.outcome is Outcome.REJECTED and refused.body["error_code"] == code, refused.body
    letter = db.execute(
        "SELECT error_code, message_id::text, source_station, error_message FROM dead_letters WHERE payload = %s",
        (future_raw,),
    ).fetchone()
    assert letter is not None and letter[:3] == (code, future["message_id"], STATION.prefix)
    # It says which version and what this centre reads, in the dead letter and in the answer to the station.
    assert letter[3] == f"{topic}: v: 99 is not a version this centre reads (1, 2)", letter[3]
    assert refused.body["data"]["error"] == letter[3]

    # The next message flows: the old gateway's completion of the same run.
    topic, raw = _message("process.completed")
    done_id = json.loads(raw)["message_id"]
    reply = _publish(requester, topic, raw, done_id)
    assert str(reply.in_reply_to) == done_id
    assert reply.outcome is Outcome.ACCEPTED, reply.body
    assert _stored(db, done_id) == ("accepted", 200, STATION.prefix)
    result = db.execute(
        "SELECT r.process_id, r.result, r.source_station, r.source_file_name, run.status FROM process_results r "
        "JOIN process_runs run ON run.id = r.run_id WHERE r.message_id = %s",
        (done_id,),
    ).fetchone()
    record = json.loads(raw)["payload"]
    assert result == ("PROC-001", "PASS", STATION.prefix, record["file_name"], "COMPLETED")
