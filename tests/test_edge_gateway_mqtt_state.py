"""Edge gateway over a real Mosquitto with a fake central responder: server down vs broker down, station state."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest

from deploy.localstack.services import MosquittoServer, find_free_port
from edge_gateway.bootstrap import run_gateway
from edge_gateway.settings import GatewaySettings
from mes_cli.gateway_status import gateway_status
from mes_contracts.envelope import Envelope, MessageType
from mes_contracts.topics import StationAddress, service_address
from tests.support.fake_centre import FakeCentre
from tests.support.waits import own_broker, until
from tests.test_edge_gateway_local_api import START
from tests.test_edge_gateway_outbox import content
from tests.test_edge_gateway_pickup import name_for

__all__ = ["own_broker"]  # the fixture, reused

pytestmark = pytest.mark.processes  # starts its own Mosquitto

STATION = StationAddress("KR", "L1", "st09")
SERVICE = service_address("fake-ingestor").state()


def _client(port: int, name: str) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def retained_state(port: int, timeout: float = 5.0) -> dict[str, Any] | None:
    """The retained station state a newcomer gets (the payload of the envelope), or None."""
    got: list[bytes] = []
    seen = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        got.append(bytes(message.payload))
        seen.set()

    client = _client(port, f"watcher-{time.monotonic_ns()}")
    client.on_message = on_message
    client.subscribe(STATION.state(), qos=1)
    try:
        if not seen.wait(timeout):
            return None
    finally:
        client.loop_stop()
        client.disconnect()
    envelope = Envelope.from_bytes(got[0])
    assert envelope.type is MessageType.STATION_STATE
    return envelope.payload


def _settings(tmp_path: Path, port: int) -> GatewaySettings:
    return GatewaySettings(
        station=STATION.station,
        work_dir=tmp_path / "st09",
        mqtt_port=port,
        local_port=find_free_port(),
        stable_window_s=0.05,
        rescan_interval_s=0.2,
        retry_interval_s=0.2,
        reply_timeout_s=2,
        state_interval_s=0.5,
    )


@pytest.mark.timeout(60)
async def test_server_down_then_up_then_broker_down(own_broker: MosquittoServer, tmp_path: Path) -> None:
    central = FakeCentre(own_broker.port)
    central.set_online(False)
    settings = _settings(tmp_path, own_broker.port)
    gateway = asyncio.create_task(run_gateway(settings))
    url = f"http://127.0.0.1:{settings.local_port}"

    def status() -> dict[str, Any]:
        try:
            return dict(httpx.get(f"{url}/status", timeout=2).json())
        except httpx.HTTPError:
            return {}

    try:
        seen = await until(lambda: (s := status()).get("availability") == "server_down" and s)
        assert seen["connected"] and seen["server_online"] is False
        refused = await asyncio.to_thread(httpx.post, f"{url}/start", json=START, timeout=5)
        assert refused.status_code == 503 and refused.json()["data"] == {"reason": "server_down"}
        state = await until(lambda: (r := retained_state(own_broker.port)) and r["server_online"] is False and r)
        assert state["online"] and state["gateway_id"] == "gw-st09"

        for n in (1, 2, 3):  # the server is down: committed to the outbox, not published
            (settings.pending_dir / name_for(n)).write_bytes(content(n))
        await until(lambda: status().get("outbox", {}).get("depth") == 3)
        assert central.received == []
        central.set_online(True)
        await until(lambda: len(list(settings.completed_dir.iterdir())) == 3)
        ids = [e.message_id for e in central.received]
        assert len(ids) == 3 == len(set(ids)) and all(e.replay for e in central.received)
        await until(lambda: (r := retained_state(own_broker.port)) and r["outbox_depth"] == 0 and r["server_online"])
        lines: list[str] = []
        assert (
            await asyncio.to_thread(gateway_status, "st09", settings.local_port, settings.work_dir, lines.append) == 0
        )
        assert any("온라인 online" in line for line in lines)

        central.close()
        await asyncio.to_thread(own_broker.stop)
        assert await until(lambda: status().get("availability") == "broker_down" and status())
        refused = await asyncio.to_thread(httpx.post, f"{url}/start", json=START, timeout=5)
        assert refused.status_code == 503 and refused.json()["data"] == {"reason": "broker_down"}
        await asyncio.to_thread(own_broker.start)  # same port; the retained "online" comes back with it
        await until(lambda: status().get("availability") == "ok", timeout=20)
    finally:
        gateway.cancel()  # what Ctrl-C does: the orderly stop, which says "offline" itself
        await asyncio.wait([gateway], timeout=15)
    assert gateway.done()
    state = await asyncio.to_thread(retained_state, own_broker.port)
    assert state is not None and state["online"] is False


@pytest.mark.timeout(60)
async def test_a_killed_gateway_is_reported_offline_by_its_last_will(
    own_broker: MosquittoServer, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, own_broker.port)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MES_GW_")},
        "MES_GW_STATION": "st09",
        "MES_GW_WORK_DIR": str(settings.work_dir),
        "MES_GW_MQTT_PORT": str(own_broker.port),
        "MES_GW_LOCAL_PORT": str(settings.local_port),
        "MES_GW_STATE_INTERVAL_S": "0.5",
    }
    child = subprocess.Popen(
        [sys.executable, "-m", "edge_gateway"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        await until(lambda: (r := retained_state(own_broker.port, 1.0)) and r["online"], timeout=30)
        child.send_signal(signal.SIGKILL)
        await asyncio.to_thread(child.wait, 10)
        await until(lambda: (r := retained_state(own_broker.port, 1.0)) and r["online"] is False)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
