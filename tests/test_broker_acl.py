"""A real Mosquitto with the accounts `mes broker` writes (dynamic-security plugin): who may connect, publish, read."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from deploy.localstack.children import ChildProcess, mes_command
from deploy.localstack.mosquitto import MosquittoServer
from mes_cli import broker
from mes_cli.broker import BrokerSite
from mes_cli.broker_acl import ServiceKind, service_block, station_block
from mes_contracts.envelope import Envelope, MessageType, Outcome, ReplyPayload, Source, make_envelope
from mes_contracts.station_state import service_state_filter
from mes_contracts.topics import Name, StationAddress, ingestor_subscriptions, service_address
from tests.support.auth import RoleAuth
from tests.support.line import start_body

pytestmark = pytest.mark.processes  # starts its own Mosquitto (and MES processes)
ST01 = StationAddress("KR", "L1", "st01")
ST02 = StationAddress("KR", "L1", "st02")
NOT_AUTHORIZED = 0x87  # MQTT 5 reason code of a refused CONNECT / PUBLISH
FAILURE = 0x80  # reason codes from here on are failures; 0x10 "no matching subscribers" is a success
TIMEOUT = 10.0


@dataclass
class SecuredBroker:
    server: MosquittoServer
    site: BrokerSite
    passwords: dict[str, str]
    ingestor_client_id: str

    @property
    def port(self) -> int:
        return self.server.port


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    """The files written exactly as `mes broker init / add-station / add-service` write them. The ingestor account
    serves several instances here (two client ids), so it is not bound to one id (tests/test_broker_identity.py)."""
    site = BrokerSite(config_dir=tmp_path_factory.mktemp("broker-config"))
    ingestor_id = f"ingestor-acl-{uuid.uuid4().hex[:8]}"
    broker.init_site(site, [ingestor_id])
    blocks = [
        station_block(ST01),
        station_block(ST02),
        service_block(ServiceKind.INGESTOR, client_ids=[ingestor_id, f"{ingestor_id}-2"]),
        service_block(ServiceKind.API),
        service_block(ServiceKind.MONITOR),
    ]
    passwords = {}
    for block in blocks:
        generated = broker.add_account(site, block, None)
        assert generated is not None
        passwords[block.username] = generated
    server = MosquittoServer(tmp_path_factory.mktemp("mosquitto-secured"), dynsec_file=site.dynsec_file)
    server.start()
    yield SecuredBroker(server, site, passwords, ingestor_id)
    server.stop()


class Client:
    """A synchronous paho client: CONNACK, SUBACK and PUBACK reason codes, received messages in order."""

    def __init__(
        self,
        port: int,
        username: str | None = None,
        password: str | None = None,
        protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv5,
        client_id: str | None = None,
    ):
        self.messages: queue.Queue[tuple[str, bytes, Any]] = queue.Queue()
        self._acks: dict[int, int] = {}
        self._subacks: dict[int, list[int]] = {}
        self._changed = threading.Condition()
        self._connack = threading.Event()
        self.connack_code = -1
        self.v5 = protocol == mqtt.MQTTv5
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"t-{uuid.uuid4().hex[:10]}",
            protocol=protocol,
            reconnect_on_failure=False,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, bytes(m.payload), m.properties))
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._connack.wait(TIMEOUT), "no CONNACK"

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connack_code = int(reason.value)
        self._connack.set()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._changed:
            self._acks[mid] = int(reason.value)
            self._changed.notify_all()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: list[Any], props: Any) -> None:
        with self._changed:
            self._subacks[mid] = [int(r.value) for r in reasons]
            self._changed.notify_all()

    @property
    def accepted(self) -> bool:
        return self.connack_code == 0

    def subscribe(self, topic: str) -> int:
        """The SUBACK code: granted QoS (< 0x80) or a failure reason."""
        result, mid = self.client.subscribe(topic, qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS and mid is not None
        with self._changed:
            assert self._changed.wait_for(lambda: mid in self._subacks, TIMEOUT), f"no SUBACK for {topic}"
            return self._subacks[mid][0]

    def publish(self, topic: str, payload: bytes, retain: bool = False, properties: Properties | None = None) -> int:
        """QoS 1; the PUBACK reason code (MQTT 5: 0x87 when the ACL refuses; MQTT 3.1.1 always acknowledges)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain, properties=properties)
        with self._changed:
            assert self._changed.wait_for(lambda: info.mid in self._acks, TIMEOUT), f"no PUBACK for {topic}"
            return self._acks[info.mid]

    def until(self, topic: str, payload: bytes) -> list[tuple[str, bytes]]:
        """Everything received up to and including the sentinel (topic, payload)."""
        seen: list[tuple[str, bytes]] = []
        while True:
            try:
                got_topic, got_payload, _ = self.messages.get(timeout=TIMEOUT)
            except queue.Empty:
                raise AssertionError(f"sentinel {topic} never arrived; got {seen}") from None
            seen.append((got_topic, got_payload))
            if (got_topic, got_payload) == (topic, payload):
                return seen

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def clients(secured: SecuredBroker) -> Iterator[Any]:
    opened: list[Client] = []

    def connect(
        username: str, protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv5, client_id: str | None = None
    ) -> Client:
        # A station account may connect only with its gateway's client id.
        station_id = f"gw-{username}" if username.startswith("st") else None
        client = Client(secured.port, username, secured.passwords[username], protocol, client_id or station_id)
        assert client.accepted, f"{username} refused: {client.connack_code:#x}"
        opened.append(client)
        return client

    yield connect
    for client in opened:
        client.close()


def _sentinel(address: StationAddress) -> tuple[str, bytes]:
    return address.event(Name.PROCESS_COMPLETED), f"sentinel-{uuid.uuid4()}".encode()


# -- connecting ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [mqtt.MQTTv5, mqtt.MQTTv311])
def test_anonymous_client_is_refused(secured: SecuredBroker, protocol: mqtt.MQTTProtocolVersion) -> None:
    client = Client(secured.port, protocol=protocol)
    try:
        assert not client.accepted and client.connack_code == NOT_AUTHORIZED
    finally:
        client.close()


@pytest.mark.parametrize(("username", "password"), [("st01", "wrong"), ("st01", ""), ("nobody", "whatever")])
def test_wrong_password_or_unknown_account_is_refused(secured: SecuredBroker, username: str, password: str) -> None:
    client = Client(secured.port, username, password)
    try:
        assert not client.accepted and client.connack_code >= 0x80
    finally:
        client.close()


# -- publishing ------------------------------------------------------------------------------------------------


def test_station_publishes_only_under_its_own_prefix(clients: Any) -> None:
    observer = clients("monitor")
    assert observer.subscribe("mes/v1/#") < 0x80
    st01 = clients("st01")
    allowed = [ST01.request(Name.PROCESS_START), ST01.event(Name.PROCESS_COMPLETED), ST01.state()]
    forbidden = [
        ST02.request(Name.PROCESS_START),
        ST02.event(Name.PROCESS_COMPLETED),
        ST02.state(),
        ST01.reply(),
        ST01.command("print-label"),
        ST02.reply(),
        ST01.prefix,
        service_address("mes-ingestor-1").state(),
        "mes/v1/KR/L1/st01x/req/process-start",
        "elsewhere",
    ]
    for topic in forbidden:  # one after the other on the same connection: a refusal does not disconnect
        assert st01.publish(topic, b"forbidden") == NOT_AUTHORIZED, topic
    for topic in allowed:
        assert st01.publish(topic, b"allowed") < FAILURE, topic
    sentinel = _sentinel(ST01)
    assert st01.publish(*sentinel) < FAILURE
    seen = observer.until(*sentinel)
    assert {topic for topic, payload in seen if payload == b"forbidden"} == set()
    assert [topic for topic, payload in seen if payload == b"allowed"] == allowed


def test_mqtt311_station_gets_no_reason_code_but_nothing_is_delivered(clients: Any) -> None:
    observer = clients("monitor")
    observer.subscribe("mes/v1/#")
    st01 = clients("st01", protocol=mqtt.MQTTv311)
    assert st01.publish(ST02.request(Name.PROCESS_START), b"forged") < FAILURE  # 3.1.1 has no PUBACK reason code
    sentinel = _sentinel(ST01)
    st01.publish(*sentinel)
    assert [m for m in observer.until(*sentinel) if m[1] == b"forged"] == []


# -- reading ---------------------------------------------------------------------------------------------------


def test_station_reads_only_its_own_reply_and_commands(clients: Any) -> None:
    st01 = clients("st01")
    # The dynamic-security plugin checks SUBSCRIBE filters: all but the station's own are refused.
    for topic_filter in ("#", "mes/v1/#", ST02.reply(), ST02.command("#"), "$share/steal/mes/v1/+/+/+/req/#"):
        assert st01.subscribe(topic_filter) == NOT_AUTHORIZED, topic_filter
    for topic_filter in (ST01.reply(), ST01.command("#")):
        assert st01.subscribe(topic_filter) < FAILURE
    ingestor = clients("ingestor", client_id=f"acl-reader-{uuid.uuid4().hex[:6]}")
    st02 = clients("st02")
    assert st02.publish(ST02.request(Name.PROCESS_START), b"st02 asks") < FAILURE
    assert st02.publish(ST02.state(), b"st02 state") < FAILURE
    assert ingestor.publish(ST02.reply(), b"for st02") < FAILURE
    assert ingestor.publish(ST02.command("print-label"), b"for st02") < FAILURE
    assert ingestor.publish(ST01.command("print-label"), b"for st01") < FAILURE
    sentinel = (ST01.reply(), b"for st01 - last")
    assert ingestor.publish(*sentinel) < FAILURE
    seen = set(st01.until(*sentinel))
    while not st01.messages.empty():  # overlapping subscriptions deliver one copy each
        topic, payload, _ = st01.messages.get_nowait()
        seen.add((topic, payload))
    assert seen == {(ST01.command("print-label"), b"for st01"), sentinel}


def test_ingestor_account_consumes_through_the_shared_subscription(secured: SecuredBroker, clients: Any) -> None:
    subscriptions = ingestor_subscriptions()
    assert all(s.startswith("$share/mes-ingestor/") for s in subscriptions)
    consumers = [clients("ingestor", client_id=f"acl-share-{n}-{uuid.uuid4().hex[:6]}") for n in range(2)]
    for consumer in consumers:
        assert [consumer.subscribe(s) for s in subscriptions] == [1, 1]
    st01, st02 = clients("st01"), clients("st02")
    sent = set()
    for n in range(6):
        for station, address in ((st01, ST01), (st02, ST02)):
            for topic in (address.request(Name.PROCESS_START), address.event(Name.PROCESS_COMPLETED)):
                payload = f"{n}".encode()
                assert station.publish(topic, payload) < FAILURE
                sent.add((topic, payload))
    got: dict[int, list[tuple[str, bytes]]] = {0: [], 1: []}
    deadline = time.monotonic() + TIMEOUT
    while sum(map(len, got.values())) < len(sent) and time.monotonic() < deadline:
        for n, consumer in enumerate(consumers):
            with contextlib.suppress(queue.Empty):
                got[n].append(consumer.messages.get(timeout=0.05)[:2])
    assert got[0] and got[1]  # the group shares the load
    assert sorted(got[0] + got[1]) == sorted(sent)  # each message exactly once across the group
    # Answers and commands to any station, and its own retained state; nothing else.
    ingestor = consumers[0]
    assert ingestor.publish(ST01.reply(), b"answer") < FAILURE
    assert ingestor.publish(ST02.command("print-label"), b"order") < FAILURE
    assert ingestor.publish(service_address(secured.ingestor_client_id).state(), b"") < FAILURE
    assert ingestor.publish(service_address("someone-else").state(), b"") == NOT_AUTHORIZED
    assert ingestor.publish(ST01.request(Name.PROCESS_START), b"x") == NOT_AUTHORIZED
    assert ingestor.publish(ST01.state(), b"x") == NOT_AUTHORIZED


def test_api_account_sends_commands_and_reads_states(clients: Any) -> None:
    st01 = clients("st01")
    st01.subscribe(ST01.command("#"))
    assert st01.publish(ST01.state(), b'{"online": true}', retain=True) < FAILURE
    api = clients("api")
    assert api.subscribe("mes/v1/+/+/+/state") < 0x80
    api.until(ST01.state(), b'{"online": true}')  # the retained state
    assert api.publish(ST01.command("print-label"), b"print") < FAILURE
    assert st01.messages.get(timeout=TIMEOUT)[:2] == (ST01.command("print-label"), b"print")
    assert api.publish(ST01.reply(), b"x") == NOT_AUTHORIZED
    assert api.publish(ST01.request(Name.PROCESS_START), b"x") == NOT_AUTHORIZED
    api.subscribe(ST01.request(Name.PROCESS_START))
    st01.publish(ST01.request(Name.PROCESS_START), b"not for the api")
    sentinel = (ST01.state(), b'{"online": false}')
    st01.publish(*sentinel, retain=True)
    assert [m for m in api.until(*sentinel) if m[1] == b"not for the api"] == []
    st01.publish(ST01.state(), b"", retain=True)  # no retained state left for other tests


def test_station_reads_the_ingestors_state(secured: SecuredBroker, clients: Any) -> None:
    """The gateway tells "server down" from "broker down" by the ingestor's retained state (README: start 503)."""
    ingestor = clients("ingestor", client_id=f"acl-state-{uuid.uuid4().hex[:6]}")
    state_topic = service_address(secured.ingestor_client_id).state()
    payload = f'{{"service": "ingestor", "online": true, "n": "{uuid.uuid4()}"}}'.encode()
    assert ingestor.publish(state_topic, payload, retain=True) < FAILURE
    st01 = clients("st01")
    assert st01.subscribe(service_state_filter()) < 0x80
    st01.until(state_topic, payload)
    assert ingestor.publish(state_topic, b"", retain=True) < FAILURE  # no retained state left for other tests


def test_api_account_reads_print_results_and_no_other_event(clients: Any) -> None:
    """POST /api/v1/label/print waits for the station's evt/print-result on the API's own link."""
    api = clients("api")
    assert api.subscribe("mes/v1/+/+/+/evt/print-result") < 0x80
    api.subscribe("mes/v1/+/+/+/evt/#")
    st01 = clients("st01")
    assert st01.publish(ST01.event(Name.PROCESS_COMPLETED), b"not for the api") < FAILURE
    sentinel = (ST01.event(Name.PRINT_RESULT), f"printed {uuid.uuid4()}".encode())
    assert st01.publish(*sentinel) < FAILURE
    seen = api.until(*sentinel)
    assert [m for m in seen if m[1] == b"not for the api"] == []


# -- adding a station to a running broker ---------------------------------------------------------------------


def test_station_added_while_running_works_after_a_restart(secured: SecuredBroker, clients: Any) -> None:
    """Mosquitto 2.0.11's dynamic-security plugin reads its file at start only: a SIGHUP does not load a new
    account, a restart does (sessions and retained messages survive it: persistence)."""
    st09 = StationAddress("KR", "L1", "st09")
    password = broker.add_account(secured.site, station_block(st09), None)
    assert password is not None
    before = Client(secured.port, "st09", password, client_id="gw-st09")
    before.close()
    assert not before.accepted
    assert secured.server.pid is not None
    os.kill(secured.server.pid, signal.SIGHUP)
    time.sleep(0.5)
    after_reload = Client(secured.port, "st09", password, client_id="gw-st09")
    after_reload.close()
    assert not after_reload.accepted  # a reload does not reread the plugin's file
    secured.server.stop()
    secured.server.start()
    observer = clients("monitor")
    observer.subscribe("mes/v1/#")
    client = Client(secured.port, "st09", password, client_id="gw-st09")
    try:
        assert client.accepted
        assert client.publish(ST01.request(Name.PROCESS_START), b"st09 for st01") == NOT_AUTHORIZED
        sentinel = (st09.request(Name.PROCESS_START), b"st09 asks")
        assert client.publish(*sentinel) < FAILURE
        seen = observer.until(*sentinel)
        assert [m for m in seen if m[1] == b"st09 for st01"] == []
    finally:
        client.close()


# -- and the database ------------------------------------------------------------------------------------------


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
