"""Edge gateway: broker vs server health, the station state contract, locked files and `mes gateway status`."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.localstack.services import find_free_port
from edge_gateway.health import Health, Unavailable
from edge_gateway.local_api import create_app
from edge_gateway.outbox import Outbox
from edge_gateway.ports import NotConnected
from edge_gateway.settings import GatewaySettings
from edge_gateway.stability import LOCKED_BACKOFF_MAX_S, UNREADABLE, Decision, FileStat, Probe, StabilityTracker
from edge_gateway.start_relay import StartRelay
from mes_cli.gateway_status import gateway_status
from mes_contracts.station_state import (
    StationState,
    parse_service_state,
    service_id_of,
    service_state_filter,
)
from mes_contracts.topics import StationAddress, service_address
from tests.test_edge_gateway_local_api import START, FakeLink
from tests.test_edge_gateway_outbox import content, new_record
from tests.test_edge_gateway_pickup import name_for

INGESTOR_1 = service_address("ingestor-1").state()
INGESTOR_2 = service_address("ingestor-2").state()


def _state(online: bool, service: str = "ingestor") -> bytes:
    return json.dumps({"service": service, "online": online}).encode()


def test_service_state_topics_and_payloads() -> None:
    assert service_state_filter() == "mes/v1/central/services/+/state"
    assert service_id_of(INGESTOR_1) == "ingestor-1"
    assert service_id_of("mes/v1/KR/L1/st01/state") is None
    assert parse_service_state(b"") is None and parse_service_state(b"{nope") is None
    parsed = parse_service_state(_state(True))
    assert parsed is not None and parsed.online and parsed.service == "ingestor"


def test_station_state_round_trip() -> None:
    state = StationState(
        site="KR",
        line="L1",
        station="st03",
        gateway_id="gw-st03",
        online=True,
        software_version="0.1.0",
        outbox_depth=3,
        oldest_pending_age_s=1.5,
        server_online=False,
        counters={"completed": 2},
        reported_at=datetime.now(UTC),
    )
    again = StationState.model_validate_json(state.model_dump_json())
    assert again == state and again.address == StationAddress("KR", "L1", "st03")


def test_health_tells_broker_down_from_server_down() -> None:
    health = Health()
    changes: list[int] = []
    health.subscribe(lambda: changes.append(1))
    assert health.unavailable() is Unavailable.BROKER_DOWN
    health.link_up()
    assert health.server_online is None and health.unavailable() is None  # no ingestor reported: not blocked
    health.service_message(INGESTOR_1, _state(False))
    assert health.server_online is False and health.unavailable() is Unavailable.SERVER_DOWN
    assert health.last_error is not None and health.last_error.code == "SERVER_DOWN"
    health.service_message(INGESTOR_2, _state(True))
    assert health.server_online is True  # one of two ingestors is enough
    health.service_message(service_address("api").state(), _state(False, service="api"))
    assert health.server_online is True  # other services do not answer station messages
    health.service_message(INGESTOR_2, b"")  # retained state cleared
    assert health.server_online is False
    health.link_down("broker gone")
    assert health.server_online is None and health.unavailable() is Unavailable.BROKER_DOWN
    assert health.last_error is not None and health.last_error.code == "BROKER_DOWN" and changes


@pytest.mark.parametrize("reason", [Unavailable.SERVER_DOWN, Unavailable.BROKER_DOWN])
async def test_start_is_refused_at_once_with_the_reason(reason: Unavailable) -> None:
    link = FakeLink(NotConnected())
    relay = StartRelay(link, StationAddress("KR", "L1", "st01"), "gw-st01", 7.5, lambda: reason)

    async def status() -> dict[str, Any]:
        return {}

    app = create_app(relay, status)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
        response = await client.post("/start", json=START)
    assert response.status_code == 503 and link.sent == []
    assert response.json()["error_code"] == "SERVICE_UNAVAILABLE" and response.json()["data"] == {"reason": reason}


async def test_broker_trouble_while_sending_says_broker_down() -> None:
    relay = StartRelay(FakeLink(NotConnected()), StationAddress("KR", "L1", "st01"), "gw-st01", 7.5, lambda: None)
    status, body = await relay.start(json.dumps(START).encode())
    assert status == 503 and body["data"] == {"reason": "broker_down"}


def test_a_locked_file_is_looked_at_again_with_backoff() -> None:
    tracker = StabilityTracker(0.5)
    stat = FileStat(10, 1)
    tracker.add("a.json", 0.0)
    assert tracker.apply(Probe("a.json", stat), 0.0) is Decision.WAIT
    now, delays = 0.5, []
    for _ in range(6):
        assert tracker.apply(Probe("a.json", UNREADABLE), now) is Decision.WAIT
        observation = tracker.get("a.json")
        assert observation is not None and observation.stat == stat  # the last real stat is kept
        delays.append(observation.deadline - now)
        now = observation.deadline
    assert delays == [1.0, 2.0, 4.0, LOCKED_BACKOFF_MAX_S, LOCKED_BACKOFF_MAX_S, LOCKED_BACKOFF_MAX_S]
    # The lock is gone: stable since before, so it is read and ready at this very look.
    assert tracker.apply(Probe("a.json", stat, b"0123456789", True), now) is Decision.READY


def test_a_writer_pausing_mid_file_gets_the_malformed_grace() -> None:
    tracker = StabilityTracker(0.5, malformed_after=5.0)
    half, whole = b'{"a": ', b'{"a": 1}'
    tracker.add("a.json", 0.0)
    tracker.apply(Probe("a.json", FileStat(len(half), 1)), 0.0)
    now = 0.5
    while now < 4.0:  # paused for 4 s, 8 windows: still not malformed, and read again every window
        assert tracker.apply(Probe("a.json", FileStat(len(half), 1), half, False), now) is Decision.WAIT
        observation = tracker.get("a.json")
        assert observation is not None and observation.deadline == pytest.approx(now + 0.5)
        now = observation.deadline
    assert tracker.apply(Probe("a.json", FileStat(len(whole), 2)), now) is Decision.WAIT  # the rest arrives
    assert tracker.apply(Probe("a.json", FileStat(len(whole), 2), whole, True, {"a": 1}), now + 0.5) is Decision.READY
    tracker.add("b.json", 10.0)
    tracker.apply(Probe("b.json", FileStat(len(half), 1)), 10.0)
    decisions = [
        tracker.apply(Probe("b.json", FileStat(len(half), 1), half, False), 10.0 + t / 2) for t in range(1, 11)
    ]
    assert decisions == [Decision.WAIT] * 9 + [Decision.MALFORMED]  # never finished: error/ after 5 s


@pytest.fixture
def canned_status() -> Iterator[tuple[int, dict[str, Any]]]:
    body: dict[str, Any] = {
        "station": {"site": "KR", "line": "L1", "station": "st03", "gateway_id": "gw-st03"},
        "software_version": "0.1.0",
        "connected": True,
        "connected_since": "2025-01-10T00:00:00+00:00",
        "broker": "127.0.0.1:1883",
        "server_online": False,
        "availability": "server_down",
        "counters": {"completed": 5},
        "pending_count": 2,
        "uptime_s": 12.0,
        "started_at": "2025-01-10T09:00:00+09:00",
        "outbox": {"depth": 7, "bytes": 4096, "oldest_pending_age_s": 42.0, "full": True, "max_records": 7},
        "last_error": {"code": "SERVER_DOWN", "message": "no central ingestor online", "at": "2025-01-10T00:00:01Z"},
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            raw = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1]), body
    server.shutdown()
    server.server_close()


def test_status_command_prints_a_running_gateway(canned_status: tuple[int, dict[str, Any]], tmp_path: Path) -> None:
    port, _ = canned_status
    lines: list[str] = []
    assert gateway_status("st03", port, tmp_path, lines.append) == 0
    text = "\n".join(lines)
    assert "실행 중 running" in text and "server_down" in text and "대기 7건 waiting" in text
    assert "FULL" in text and "SERVER_DOWN" in text and "42 s" in text


async def test_status_command_reads_the_outbox_when_the_gateway_is_down(tmp_path: Path) -> None:
    settings = GatewaySettings(station="st03", work_dir=tmp_path)
    settings.prepare_work_dirs()
    outbox = Outbox(settings.outbox_path, 100, 1 << 20)
    await outbox.open()
    for n in (1, 2):
        await outbox.admit(new_record(settings, name_for(n), content(n)))
    await outbox.close()
    (settings.pending_dir / name_for(1)).write_bytes(content(1))
    lines: list[str] = []
    assert gateway_status("st03", find_free_port(), tmp_path, lines.append) == 1
    text = "\n".join(lines)
    assert "NOT RUNNING" in text and "대기 2건 waiting" in text and "1개 파일 files" in text


def test_mes_gateway_status_command_reads_the_outbox_when_the_gateway_is_down(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mes_cli.main import app

    result = CliRunner().invoke(
        app, ["gateway", "status", "--station", "st07", "--work-dir", str(tmp_path), "--local-port", "1"]
    )
    assert result.exit_code == 1, result.output
    assert "st07" in result.output and "NOT RUNNING" in result.output
