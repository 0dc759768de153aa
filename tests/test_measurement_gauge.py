"""A gateway process reading an emulated force gauge on a pty: readings before any start are dropped, after an
accepted start they are stored for that LOT and process; bad lines never stop it."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from deploy.localstack.children import ChildProcess, mes_command, wait_http_ok
from deploy.localstack.services import MosquittoServer, find_free_port
from tests.support.auth import RoleAuth
from tests.support.line import start_body
from tests.support.stations import allow_processes

pytestmark = [
    pytest.mark.plain_pg,
    pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal (os.openpty)"),
]
STATION = "stgauge"


@pytest.fixture
def gauge_gateway(
    broker: MosquittoServer, ingestor: ChildProcess, db: psycopg.Connection, tmp_path: Path, logs_dir: Path
) -> Iterator[tuple[int, str, Path]]:
    allow_processes(db, STATION, ["PROC-001"])
    controller, device = os.openpty()
    port = find_free_port()
    env = {
        "MES_GW_STATION": STATION,
        "MES_GW_WORK_DIR": str(tmp_path / STATION),
        "MES_GW_MQTT_PORT": str(broker.port),
        "MES_GW_LOCAL_PORT": str(port),
        "MES_GW_GAUGE_PORT": os.ttyname(device),
        "MES_GW_GAUGE_BATCH_S": "0.2",
    }
    child = ChildProcess("gateway-gauge", mes_command("gateway", "--station", STATION), env, logs_dir / "gauge.log")
    child.start()
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/status", 30, child)
        yield controller, f"http://127.0.0.1:{port}", logs_dir / "gauge.log"
    finally:
        child.stop()
        os.close(controller)
        os.close(device)


def _wait(condition: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _stored(db: psycopg.Connection, lot: str) -> list[tuple[float, str | None, str]]:
    return db.execute(
        "SELECT s.value, s.unit, s.channel FROM measurement_samples s JOIN lots l ON l.id = s.lot_id "
        "WHERE l.lot_number = %s AND s.process_id = 'PROC-001' ORDER BY s.time, s.seq",
        (lot,),
    ).fetchall()


def test_gauge_readings_are_stored_for_the_started_lot(
    gauge_gateway: tuple[int, str, Path], db: psycopg.Connection, api_url: str, auth: RoleAuth
) -> None:
    controller, gateway_url, log = gauge_gateway
    lot = httpx.post(f"{api_url}/api/v1/lots", json={"shift": "D"}, timeout=10, auth=auth.manager).json()["data"]
    lot_number = lot["lot_number"]
    # pyserial flushes what arrived before it opened the port: wait for the gateway's gauge to be open
    assert _wait(lambda: "baud" in log.read_text(errors="replace")), "the gauge port was never opened"
    os.write(controller, b"99.99 N\r\n" * 5)  # no start yet: whose would they be? dropped
    assert _wait(lambda: "without a started LOT" in log.read_text(errors="replace")), "no drop logged"
    started = httpx.post(f"{gateway_url}/start", json=start_body(lot_number, "PROC-001"), timeout=30)
    assert started.status_code == 200, started.text
    lines = [f"{10 + i / 100:.2f} N\r\n".encode() for i in range(40)]
    lines[7:7] = [b"OVERLOAD\r\n", b"\x00\xff\r\n"]
    for line in lines:
        os.write(controller, line)
    _wait(lambda: len(_stored(db, lot_number)) >= 40)
    stored = _stored(db, lot_number)
    assert [v for v, _, _ in stored] == [10 + i / 100 for i in range(40)]
    assert {(u, c) for _, u, c in stored} == {("N", "force")}
