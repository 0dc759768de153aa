"""Station identity at the broker (issue 11, finding 3) and the site's broker settings on the local broker (finding 6).

A real Mosquitto 2.0 with the dynamic-security file `mes broker` writes: a station account can neither join the
ingestors' shared subscription nor connect with another client's id; a kill -9 keeps retained states.
"""

from __future__ import annotations

import contextlib
import os
import queue
import random
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from deploy.localstack.children import wait_http_ok
from deploy.localstack.mosquitto import MosquittoServer
from line_simulator.payloads import completion_record
from mes_cli import broker
from mes_cli.broker import BrokerSite
from mes_cli.broker_acl import ServiceKind, service_block, station_block
from mes_cli.broker_policy import MAX_QUEUED_MESSAGES
from mes_contracts.topics import INGESTOR_SHARE_GROUP, Name, StationAddress, ingestor_subscriptions
from tests.support.auth import RoleAuth
from tests.support.broker_acl import FAILURE, NOT_AUTHORIZED, TIMEOUT, Client
from tests.support.line import Line, later
from tests.support.secured_line import INGESTOR_ID, start_ingestor, start_st01_gateway

pytestmark = pytest.mark.processes  # starts its own Mosquitto (and MES processes)
ST01 = StationAddress("KR", "L1", "st01")
ST02 = StationAddress("KR", "L1", "st02")


@pytest.fixture(scope="module")
def site_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MosquittoServer, dict[str, str]]]:
    site = BrokerSite(config_dir=tmp_path_factory.mktemp("identity-config"))
    broker.init_site(site, [INGESTOR_ID])
    passwords: dict[str, str] = {}
    for block in (
        station_block(ST01),
        station_block(ST02),
        service_block(ServiceKind.INGESTOR),
        service_block(ServiceKind.MONITOR),
    ):
        generated = broker.add_account(site, block, None)
        assert generated is not None
        passwords[block.username] = generated
    server = MosquittoServer(
        tmp_path_factory.mktemp("identity-broker"), dynsec_file=site.dynsec_file, autosave_interval=1
    )  # the site saves every 30 s; 1 s keeps the kill -9 test short
    server.start()
    yield server, passwords
    server.stop()


def _connect(site_broker: tuple[MosquittoServer, dict[str, str]], user: str, client_id: str) -> Client:
    server, passwords = site_broker
    return Client(server.port, user, passwords[user], client_id=client_id)


@contextlib.contextmanager
def _opened(*clients: Client) -> Iterator[None]:
    try:
        yield
    finally:
        for client in clients:
            client.close()


def test_a_station_cannot_join_the_ingestors_shared_subscription(site_broker: tuple[MosquittoServer, dict]) -> None:
    """Four station connections try to join the group; the ingestor still receives every message."""
    ingestor = _connect(site_broker, "ingestor", INGESTOR_ID)
    intruders = [_connect(site_broker, "st02", "gw-st02")]  # one connection per bound client id
    st01 = _connect(site_broker, "st01", "gw-st01")
    with _opened(ingestor, st01, *intruders):
        assert [ingestor.subscribe(f) for f in ingestor_subscriptions()] == [1, 1]
        for intruder in intruders:
            for topic_filter in (
                *ingestor_subscriptions(),
                f"$share/{INGESTOR_SHARE_GROUP}/#",
                "#",
                f"$share/other/{ST01.request(Name.PROCESS_START)}",
                ST01.reply(),
            ):
                assert intruder.subscribe(topic_filter) == NOT_AUTHORIZED, topic_filter
        sent = {(ST01.event(Name.PROCESS_COMPLETED), f"{n}".encode()) for n in range(12)}
        for topic, payload in sorted(sent):
            assert st01.publish(topic, payload) < FAILURE
        got: set[tuple[str, bytes]] = set()
        deadline = time.monotonic() + TIMEOUT
        while got != sent and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                got.add(ingestor.messages.get(timeout=0.1)[:2])
        assert got == sent  # nobody else took a share
        assert intruders[0].messages.empty()


def test_a_station_cannot_take_another_clients_id(site_broker: tuple[MosquittoServer, dict]) -> None:
    st01 = _connect(site_broker, "st01", "gw-st01")
    ingestor = _connect(site_broker, "ingestor", INGESTOR_ID)
    with _opened(st01, ingestor):
        for stolen in ("gw-st01", INGESTOR_ID, "anything-else"):
            thief = _connect(site_broker, "st02", stolen)
            thief.close()
            assert thief.connack_code == NOT_AUTHORIZED, stolen
        # The bound ingestor account cannot use a station's id either.
        thief = _connect(site_broker, "ingestor", "gw-st01")
        thief.close()
        assert thief.connack_code == NOT_AUTHORIZED
        time.sleep(0.3)
        # Both victims are still connected and working.
        assert st01.client.is_connected() and ingestor.client.is_connected()
        assert st01.publish(ST01.state(), b"still here") < FAILURE
        assert ingestor.publish(ST01.reply(), b"answer") < FAILURE


def test_a_real_line_delivers_everything_while_a_station_account_attacks(
    site_broker: tuple[MosquittoServer, dict],
    central_env: dict[str, str],
    api_url: str,
    auth: RoleAuth,
    tmp_path: Path,
    logs_dir: Path,
) -> None:
    """Finding 3 through the real gateway, broker and ingestor: st02's account tries to join the ingestors'
    group and to take the gateway's and the ingestor's client ids; every file of st01 is still stored."""
    server, passwords = site_broker
    ingestor = start_ingestor("ingestor-identity", central_env, server.port, passwords["ingestor"], logs_dir)
    gateway, station = start_st01_gateway(
        "gateway-identity", tmp_path / "st01", server.port, passwords["st01"], logs_dir
    )
    intruder = _connect(site_broker, "st02", "gw-st02")
    try:
        wait_http_ok(f"{station.gateway_url}/status", 30, gateway)
        assert [intruder.subscribe(f) for f in ingestor_subscriptions()] == [NOT_AUTHORIZED] * 2
        for stolen in ("gw-st01", INGESTOR_ID):
            thief = _connect(site_broker, "st02", stolen)
            thief.close()
            assert thief.connack_code == NOT_AUTHORIZED
        line = Line(api_url, {"PROC-001": station}, auth=auth.manager)
        lot = line.create_lot()
        started_at = later(-120)
        answer = line.start_via_gateway(lot, "PROC-001", at=started_at)
        assert answer.status_code == 200, f"{answer.text}\n{gateway.log_tail()}\n{ingestor.log_tail()}"
        names = []
        for n in range(12):
            record = completion_record(
                "PROC-001", lot, "W001", started_at, started_at + timedelta(seconds=30), random.Random(n)
            )
            names.append(line.drop_record(record, stamp=later(-100 + n)))
        assert [line.wait_disposition("PROC-001", name, timeout=30) for name in names] == ["completed"] * 12
        assert httpx.get(f"{station.gateway_url}/status", timeout=10).json()["connected"] is True
    finally:
        intruder.close()
        gateway.stop()
        ingestor.stop()


def test_kill_9_keeps_retained_states_and_sessions(site_broker: tuple[MosquittoServer, dict]) -> None:
    server, _ = site_broker
    marker = f'{{"online": true, "n": "{uuid.uuid4()}"}}'.encode()
    st01 = _connect(site_broker, "st01", "gw-st01")
    with _opened(st01):
        assert st01.publish(ST01.state(), marker, retain=True) < FAILURE
    time.sleep(2.5)  # > autosave_interval
    pid = server.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + TIMEOUT
    while server.pid is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    server.start()
    monitor = _connect(site_broker, "monitor", f"monitor-{uuid.uuid4().hex[:6]}")
    with _opened(monitor):
        assert monitor.subscribe(ST01.state()) < FAILURE
        assert monitor.until(ST01.state(), marker)[-1] == (ST01.state(), marker)
    st01 = _connect(site_broker, "st01", "gw-st01")
    with _opened(st01):
        assert st01.publish(ST01.state(), b"", retain=True) < FAILURE  # nothing left for other tests


def test_accounts_of_the_older_password_file_keep_their_passwords(tmp_path: Path) -> None:
    """`mes broker init` on a site of the password_file/acl_file setup: the real mosquitto_passwd hash logs in."""
    config = tmp_path / "mes"
    config.mkdir()
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(config / "passwords"), "st01", "old-password-st01"],
        check=True,
        capture_output=True,
    )
    (config / "acl").write_text(
        "# BEGIN mes-account st01\n# station KR/L1/st01: writes req/#, evt/#, state\n"
        "user st01\ntopic write mes/v1/KR/L1/st01/req/#\n# END mes-account st01\n"
    )
    site = BrokerSite(config_dir=config)
    assert any("imported 'st01'" in note for note in broker.init_site(site, [INGESTOR_ID]))
    server = MosquittoServer(tmp_path / "broker", dynsec_file=site.dynsec_file)
    server.start()
    try:
        station = Client(server.port, "st01", "old-password-st01", client_id="gw-st01")
        with _opened(station):
            assert station.accepted
            assert station.subscribe(ST02.reply()) == NOT_AUTHORIZED  # today's rules, not the old ACL
        wrong = Client(server.port, "st01", "another-password", client_id="gw-st01")
        wrong.close()
        assert not wrong.accepted
    finally:
        server.stop()


def test_the_local_broker_runs_the_site_settings(tmp_path: Path) -> None:
    """`mes up` and the tests render the same persistence, queue and logging lines as `mes broker init`."""
    site_conf = broker.render_conf(BrokerSite()).splitlines()
    local = MosquittoServer(tmp_path, port=1, dynsec_file=tmp_path / "dynamic-security.json").render_config()
    for setting in (
        "autosave_interval 30",
        f"max_queued_messages {MAX_QUEUED_MESSAGES}",
        "max_queued_bytes 0",
        "log_type subscribe",
        "persistence true",
        "allow_anonymous false",
        "persistent_client_expiration 14d",
        "set_tcp_nodelay true",
    ):
        assert setting in site_conf and setting in local.splitlines(), setting
    assert "max_queued_messages 0" not in local
    assert any(
        line.startswith("plugin ") and line.endswith("mosquitto_dynamic_security.so") for line in local.splitlines()
    )
