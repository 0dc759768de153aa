"""A real Mosquitto with the accounts `mes broker` writes, and the real ingestor behind it: a start forged by one
station for another never reaches the database."""

from __future__ import annotations

import json
import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from deploy.localstack.children import ChildProcess, mes_command
from mes_contracts.envelope import Envelope, MessageType, Outcome, ReplyPayload, Source, make_envelope
from mes_contracts.topics import Name, StationAddress, service_address
from tests.support.auth import RoleAuth
from tests.support.broker_acl import FAILURE, NOT_AUTHORIZED, ST01, ST02, Client, SecuredBroker, clients, secured
from tests.support.line import start_body

pytestmark = pytest.mark.processes  # starts its own Mosquitto (and MES processes)
__all__ = ["clients", "secured"]  # the fixtures, reused


@pytest.fixture
def secured_ingestor(secured: SecuredBroker, central_env: dict[str, str], logs_dir: Path) -> Iterator[None]:
    """The real ingestor process, logged in with the ingestor account; its persistent session removed after."""
    client_id = secured.ingestor_client_id
    env = {
        **central_env,
        "MES_MQTT_HOST": "127.0.0.1",
        "MES_MQTT_PORT": str(secured.port),
        "MES_MQTT_USERNAME": "ingestor",
        "MES_MQTT_PASSWORD": secured.passwords["ingestor"],
        "MES_INGESTOR_CLIENT_ID": client_id,
    }
    child = ChildProcess("ingestor-secured", mes_command("ingest"), env, logs_dir / "ingestor-secured.log").start()
    watcher = Client(secured.port, "monitor", secured.passwords["monitor"])
    try:
        watcher.subscribe(service_address(client_id).state())
        while True:
            try:
                _, payload, _ = watcher.messages.get(timeout=30)
            except queue.Empty:
                raise RuntimeError(f"secured ingestor did not come up:\n{child.log_tail()}") from None
            if payload and json.loads(payload).get("online") is True:
                break
        yield
    finally:
        watcher.close()
        child.stop()
        # A clean start with no expiry ends the persistent session and its shared subscriptions.
        ender = Client(secured.port, "ingestor", secured.passwords["ingestor"], client_id=client_id)
        ender.close()


def _start_request(sender: Client, topic: str, source: StationAddress, lot: str, seq: int) -> tuple[Envelope, int]:
    envelope = make_envelope(
        MessageType.PROCESS_START_REQUEST, Source.of(source, f"gw-{source.station}"), seq, start_body(lot, "PROC-001")
    )
    props = None
    if sender.v5:
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = ST02.reply()
        props.CorrelationData = str(envelope.message_id).encode()
    return envelope, sender.publish(topic, envelope.to_bytes(), properties=props)


def test_forged_start_from_another_station_never_reaches_the_database(
    secured_ingestor: None, clients: Any, api_url: str, auth: RoleAuth, db: psycopg.Connection
) -> None:
    created = httpx.post(f"{api_url}/api/v1/lots", json={"shift": "D"}, timeout=10, auth=auth.manager)
    lot = str(created.json()["data"]["lot_number"])
    # st02 runs PROC-002 on the conventional line; here it also starts PROC-001 (station_processes, 0007).
    db.execute(
        "INSERT INTO station_processes (site, line, station, process_id, created_by) "
        "VALUES ('KR', 'L1', 'st02', 'PROC-001', 'test') ON CONFLICT DO NOTHING"
    )
    try:
        _forged_and_own(clients, lot, db)
    finally:
        db.execute("DELETE FROM station_processes WHERE station = 'st02' AND process_id = 'PROC-001'")


def _forged_and_own(clients: Any, lot: str, db: psycopg.Connection) -> None:
    # st02 (valid account) speaks for st01 on st01's topic — the body would be valid for the ingestor.
    # One connection at a time: the account is bound to one client id (a second connection replaces the first).
    st02_v311 = clients("st02", protocol=mqtt.MQTTv311)
    forged_v311, code = _start_request(st02_v311, ST01.request(Name.PROCESS_START), ST01, lot, 2)
    assert code == 0  # MQTT 3.1.1: acknowledged, silently dropped
    st02_v311.close()
    st02 = clients("st02")
    st02.subscribe(ST02.reply())
    forged_v5, code = _start_request(st02, ST01.request(Name.PROCESS_START), ST01, lot, 1)
    assert code == NOT_AUTHORIZED
    # The same start under st02's own topic is accepted: nothing earlier took the LOT's PROC-001 start.
    own, code = _start_request(st02, ST02.request(Name.PROCESS_START), ST02, lot, 3)
    assert code < FAILURE
    _, payload, _ = st02.messages.get(timeout=15)  # an answer to a forged request would come first
    reply = ReplyPayload.model_validate(Envelope.from_bytes(payload).payload)
    assert reply.in_reply_to == own.message_id and reply.outcome is Outcome.ACCEPTED
    forged_ids = [str(forged_v5.message_id), str(forged_v311.message_id)]
    stored = db.execute(
        "SELECT count(*) FROM processed_messages WHERE message_id::text = ANY(%s)", (forged_ids,)
    ).fetchone()
    assert stored == (0,)
    runs = db.execute(
        "SELECT start_message_id::text, start_source FROM process_runs r JOIN lots l ON l.id = r.lot_id "
        "WHERE l.lot_number = %s",
        (lot,),
    ).fetchall()
    assert [run[0] for run in runs] == [str(own.message_id)]
