"""A real Mosquitto with the accounts `mes broker` writes (dynamic-security plugin): who may connect, publish, read."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from mes_cli import broker
from mes_cli.broker_acl import station_block
from mes_contracts.station_state import service_state_filter
from mes_contracts.topics import Name, StationAddress, ingestor_subscriptions, service_address
from tests.support.broker_acl import (
    FAILURE,
    NOT_AUTHORIZED,
    ST01,
    ST02,
    TIMEOUT,
    Client,
    SecuredBroker,
    clients,
    secured,
)

pytestmark = pytest.mark.processes  # starts its own Mosquitto (and MES processes)
__all__ = ["clients", "secured"]  # the fixtures, reused


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
