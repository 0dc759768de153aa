"""The ingestor over a real broker: MQTT 5 request/response, idempotent redelivery, source checks."""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import psycopg
import pytest

from deploy.localstack.children import ChildProcess
from deploy.localstack.services import MosquittoServer
from line_simulator.payloads import completion_record
from mes_contracts.envelope import MessageType, Outcome, Source, make_envelope
from mes_contracts.topics import Name, StationAddress
from tests.support.auth import RoleAuth
from tests.support.line import SEOUL, start_body
from tests.support.mqtt import Requester
from tests.support.stations import allow_processes

pytestmark = pytest.mark.plain_pg  # issue 14: also run on plain PostgreSQL (test.sh's second pass)

STATION = StationAddress("KR", "L1", "sttest")


@pytest.fixture
def requester(broker: MosquittoServer, ingestor: ChildProcess, db: psycopg.Connection) -> Iterator[Requester]:
    allow_processes(db, STATION.station, ["PROC-001", "PROC-003"])  # a stand-in station (station_processes)
    client = Requester(broker.port, STATION.reply(), f"test-{uuid.uuid4().hex[:8]}")
    yield client
    client.close()


def _lot(api_url: str, auth: RoleAuth) -> str:
    created = httpx.post(f"{api_url}/api/v1/lots", json={"shift": "D"}, timeout=10, auth=auth.manager)
    return str(created.json()["data"]["lot_number"])


def _source(station: StationAddress = STATION) -> Source:
    return Source.of(station, "gw-test")


def test_start_request_answered_over_mqtt_same_as_rest(requester: Requester, api_url: str, auth: RoleAuth) -> None:
    lot = _lot(api_url, auth)
    request = make_envelope(MessageType.PROCESS_START_REQUEST, _source(), 1, start_body(lot, "PROC-001"))
    requester.send(STATION.request(Name.PROCESS_START), request)
    reply = requester.reply()
    assert reply.in_reply_to == request.message_id
    assert reply.outcome is Outcome.ACCEPTED and reply.http_status == 200
    assert reply.body["message"] == "착공이 등록되었습니다" and reply.body["data"]["work_order_id"].startswith("WO-")
    wrong = make_envelope(MessageType.PROCESS_START_REQUEST, _source(), 2, start_body(lot, "PROC-003"))
    requester.send(STATION.request(Name.PROCESS_START), wrong)
    refused = requester.reply()
    assert refused.outcome is Outcome.REJECTED and refused.http_status == 400
    assert refused.body["error_code"] == "PREVIOUS_PROCESS_NOT_COMPLETED"


def test_redelivered_completion_is_stored_once(
    requester: Requester, api_url: str, auth: RoleAuth, db: psycopg.Connection
) -> None:
    lot = _lot(api_url, auth)
    requester.send(
        STATION.request(Name.PROCESS_START),
        make_envelope(MessageType.PROCESS_START_REQUEST, _source(), 1, start_body(lot, "PROC-001")),
    )
    assert requester.reply().outcome is Outcome.ACCEPTED
    end = datetime.now(SEOUL).replace(microsecond=0)
    record = completion_record("PROC-001", lot, "W001", end - timedelta(minutes=1), end, random.Random(1))
    raw = json.dumps(record).encode()
    payload = {
        "record": record,
        "file_name": f"{lot}_PROC-001_{end:%Y%m%d%H%M%S}.json",
        "sha256": hashlib.sha256(raw).hexdigest(),
    }
    event = make_envelope(MessageType.PROCESS_COMPLETED, _source(), 2, payload)
    for _ in range(3):  # the same message id three times, as a broker redelivery or a replay would
        requester.send(STATION.event(Name.PROCESS_COMPLETED), event)
    outcomes = sorted(requester.reply().outcome.value for _ in range(3))
    assert outcomes == ["accepted", "duplicate", "duplicate"]
    rows = db.execute("SELECT count(*) FROM process_results WHERE message_id = %s", (event.message_id,)).fetchone()
    assert rows == (1,)
    # A new message id carrying the same file bytes (a re-picked file) is recognised by its hash.
    again = make_envelope(MessageType.PROCESS_COMPLETED, _source(), 3, payload)
    requester.send(STATION.event(Name.PROCESS_COMPLETED), again)
    assert requester.reply().outcome is Outcome.DUPLICATE
    total = db.execute(
        "SELECT count(*) FROM process_results r JOIN lots l ON l.id = r.lot_id WHERE l.lot_number = %s", (lot,)
    ).fetchone()
    assert total == (1,)


def test_a_station_cannot_speak_for_another(
    requester: Requester, api_url: str, auth: RoleAuth, db: psycopg.Connection
) -> None:
    lot = _lot(api_url, auth)
    other = StationAddress("KR", "L1", "st99")
    forged = make_envelope(MessageType.PROCESS_START_REQUEST, _source(other), 1, start_body(lot, "PROC-001"))
    requester.send(STATION.request(Name.PROCESS_START), forged)
    reply = requester.reply()
    assert reply.outcome is Outcome.REJECTED and reply.body["error_code"] == "INVALID_REQUEST"
    runs = db.execute(
        "SELECT count(*) FROM process_runs r JOIN lots l ON l.id = r.lot_id WHERE l.lot_number = %s", (lot,)
    ).fetchone()
    assert runs == (0,)


def test_unreadable_message_does_not_stop_the_ingestor(requester: Requester, api_url: str, auth: RoleAuth) -> None:
    requester.client.publish(STATION.event(Name.PROCESS_COMPLETED), b"garbage", qos=1).wait_for_publish(5)
    lot = _lot(api_url, auth)
    request = make_envelope(MessageType.PROCESS_START_REQUEST, _source(), 9, start_body(lot, "PROC-001"))
    requester.send(STATION.request(Name.PROCESS_START), request)
    assert requester.reply().outcome is Outcome.ACCEPTED
