"""A real Mosquitto with the accounts `mes broker` writes (dynamic-security plugin), and a synchronous MQTT client
that reports reason codes: shared by tests/test_broker_acl*.py and tests/test_broker_identity.py."""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.properties import Properties

from deploy.localstack.mosquitto import MosquittoServer
from mes_cli import broker
from mes_cli.broker import BrokerSite
from mes_cli.broker_acl import ServiceKind, service_block, station_block
from mes_contracts.topics import StationAddress

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
