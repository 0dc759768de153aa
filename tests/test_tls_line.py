"""A station gateway and the ingestor on a TLS-only broker with their own accounts: a start and a completion."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from deploy.localstack.children import wait_http_ok
from deploy.localstack.mosquitto import MosquittoServer, TlsFiles
from line_simulator.payloads import completion_record
from mes_cli import broker
from mes_cli.broker import BrokerSite
from mes_cli.broker_acl import ServiceKind, service_block, station_block
from tests.support.auth import RoleAuth
from tests.support.line import Line, later, start_body
from tests.support.secured_line import INGESTOR_ID, start_ingestor, start_st01_gateway
from tests.test_broker_tls import ST01, Pki, _with_cryptography

pytestmark = pytest.mark.processes  # starts its own Mosquitto (and MES processes)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return _with_cryptography(tmp_path_factory.mktemp("pki-line"))


@pytest.fixture(scope="module")
def secured_broker(
    pki: Pki,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[MosquittoServer, dict[str, str]]]:
    """No anonymous clients and no plain listener that a client could fall back to: TLS, accounts and the ACL."""
    site = BrokerSite(config_dir=tmp_path_factory.mktemp("tls-line-config"))
    broker.init_site(site, [INGESTOR_ID])
    passwords = {}
    for block in (station_block(ST01), service_block(ServiceKind.INGESTOR)):
        passwords[block.username] = f"pw-{uuid.uuid4().hex}"
        broker.add_account(site, block, passwords[block.username])
    server = MosquittoServer(
        tmp_path_factory.mktemp("mosquitto-tls-line"),
        dynsec_file=site.dynsec_file,
        tls=TlsFiles(pki.cafile, pki.certfile, pki.keyfile),
    )
    server.start()
    yield server, passwords
    server.stop()


def test_gateway_and_ingestor_work_over_tls_with_their_own_accounts(
    secured_broker: tuple[MosquittoServer, dict[str, str]],
    pki: Pki,
    central_env: dict[str, str],
    api_url: str,
    auth: RoleAuth,
    tmp_path: Path,
    logs_dir: Path,
) -> None:
    server, passwords = secured_broker
    ca = str(pki.cafile)
    port = server.tls_port
    ingestor = start_ingestor(
        "ingestor-tls", central_env, port, passwords["ingestor"], logs_dir, MES_MQTT_TLS_CA_FILE=ca
    )
    gateway, station = start_st01_gateway(
        "gateway-tls", tmp_path / "st01", port, passwords["st01"], logs_dir, MES_GW_MQTT_TLS_CA_FILE=ca
    )
    try:
        wait_http_ok(f"{station.gateway_url}/status", 30, gateway)
        line = Line(api_url, {"PROC-001": station}, auth=auth.manager)
        lot = line.create_lot()
        started_at = later(-60)

        answer = line.start_via_gateway(lot, "PROC-001", at=started_at)
        assert answer.status_code == 200, f"{answer.text}\n{gateway.log_tail()}\n{ingestor.log_tail()}"
        assert answer.json()["data"]["work_order_id"].startswith("WO-")

        record = completion_record(
            "PROC-001", lot, "W001", started_at, started_at + timedelta(seconds=30), random.Random(7)
        )
        assert line.wait_disposition("PROC-001", line.drop_record(record)) == "completed"
        assert line.lot(lot)["status"] == "IN_PROGRESS"
        status = httpx.get(f"{station.gateway_url}/status", timeout=10).json()
        assert status["broker"] == f"127.0.0.1:{server.tls_port}" and status["broker_tls"] is True
        assert status["connected"] is True
        for child in (gateway, ingestor):
            assert "CERTIFICATE_VERIFY_FAILED" not in child.log_tail()

        # The station account may read the ingestor's retained state: with the ingestor gone, the gateway knows
        # the server (not the broker) is down and says so at once.
        ingestor.stop()
        deadline = time.monotonic() + 20
        while httpx.get(f"{station.gateway_url}/status", timeout=10).json()["server_online"] is not False:
            assert time.monotonic() < deadline, gateway.log_tail()
            time.sleep(0.2)
        refused = httpx.post(f"{station.gateway_url}/start", json=start_body(lot, "PROC-002"), timeout=20)
        assert refused.status_code == 503 and refused.json()["data"]["reason"] == "server_down", refused.text
    finally:
        gateway.stop()
        ingestor.stop()


def test_a_gateway_that_cannot_verify_the_broker_never_connects(
    secured_broker: tuple[MosquittoServer, dict[str, str]],
    tmp_path: Path,
    logs_dir: Path,
) -> None:
    """The system's CAs do not know our test CA: the gateway must refuse the broker, not send it the password."""
    server, passwords = secured_broker
    gateway, station = start_st01_gateway(
        "gateway-tls-unverified",
        tmp_path / "st01",
        server.tls_port,
        passwords["st01"],
        logs_dir,
        MES_GW_MQTT_TLS="true",
    )
    try:
        url = station.gateway_url
        wait_http_ok(f"{url}/status", 30, gateway)
        deadline = time.monotonic() + 20
        while "certificate verify failed" not in gateway.log_tail().lower() and time.monotonic() < deadline:
            time.sleep(0.2)
        lines = [line for line in gateway.log_tail().splitlines() if "certificate verify failed" in line.lower()]
        assert lines and all('"level": "error"' in line for line in lines), gateway.log_tail()
        assert httpx.get(f"{url}/status", timeout=5).json()["connected"] is False
        body = {
            "lot_number": "WF-KR-260302D-001",
            "process_id": "PROC-001",
            "process_name": "레이저 마킹",
            "worker_id": "W001",
            "start_time": later(0).isoformat(),
        }
        refused = httpx.post(f"{url}/start", json=body, timeout=20)
        assert refused.status_code == 503, refused.text
    finally:
        gateway.stop()
