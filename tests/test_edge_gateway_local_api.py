"""Edge gateway: the loopback start/status interface, against a fake broker link (no broker needed)."""

from __future__ import annotations

import itertools
import json
import socket
import uuid
from typing import Any

import httpx
import pytest

from edge_gateway.local_api import bind_loopback, create_app
from edge_gateway.ports import NotConnected, ReplyTimeout
from edge_gateway.start_relay import StartRelay, parse_start_body
from mes_contracts.envelope import Envelope, MessageType, Outcome, ReplyPayload
from mes_contracts.topics import StationAddress

ADDRESS = StationAddress("KR", "L1", "st01")
START = {
    "lot_number": "WF-KR-251110D-001",
    "process_id": "PROC-001",
    "process_name": "레이저 마킹",
    "worker_id": "W001",
    "start_time": "2025-01-10T09:00:00+09:00",
}


class FakeLink:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.sent: list[tuple[str, Envelope, float]] = []
        self._seq = itertools.count()

    @property
    def connected(self) -> bool:
        return not isinstance(self.answer, NotConnected)

    def next_seq(self) -> int:
        return next(self._seq)

    async def request(self, topic: str, envelope: Envelope, timeout: float) -> ReplyPayload:
        self.sent.append((topic, envelope, timeout))
        if isinstance(self.answer, Exception):
            raise self.answer
        reply: ReplyPayload = self.answer(envelope)
        return reply


def _reply(status: int, body: dict[str, Any], outcome: Outcome) -> Any:
    return lambda envelope: ReplyPayload(
        in_reply_to=envelope.message_id, outcome=outcome, http_status=status, body=body
    )


async def _status() -> dict[str, Any]:
    return {"connected": True, "counters": {"completed": 3}}


def _client(link: FakeLink) -> httpx.AsyncClient:
    app = create_app(StartRelay(link, ADDRESS, "gw-st01", 7.5), _status)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")


async def test_start_is_forwarded_and_the_reply_returned_as_is() -> None:
    body = {"status": "success", "message": "착공이 등록되었습니다", "data": {**START, "work_order_id": "WO-1"}}
    link = FakeLink(_reply(200, body, Outcome.ACCEPTED))
    async with _client(link) as client:
        response = await client.post("/start", content=json.dumps(START, ensure_ascii=False).encode())
    assert response.status_code == 200
    assert response.json() == body
    topic, envelope, timeout = link.sent[0]
    assert topic == "mes/v1/KR/L1/st01/req/process-start"
    assert envelope.type is MessageType.PROCESS_START_REQUEST
    assert envelope.payload == START
    assert (envelope.source.station, envelope.source.gateway_id, timeout) == ("st01", "gw-st01", 7.5)


async def test_refusal_status_and_body_pass_through() -> None:
    body = {
        "status": "error",
        "message": "이전 공정이 완료되지 않았습니다",
        "error_code": "PREVIOUS_PROCESS_NOT_COMPLETED",
        "data": {"lot_number": START["lot_number"]},
    }
    async with _client(FakeLink(_reply(400, body, Outcome.REJECTED))) as client:
        response = await client.post("/start", json=START)
    assert (response.status_code, response.json()) == (400, body)


async def test_each_start_gets_its_own_message_id_and_seq() -> None:
    link = FakeLink(_reply(200, {"status": "success", "message": "", "data": {}}, Outcome.ACCEPTED))
    async with _client(link) as client:
        await client.post("/start", json=START)
        await client.post("/start", json=START)
    (_, first, _), (_, second, _) = link.sent
    assert first.message_id != second.message_id and second.seq == first.seq + 1


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [(NotConnected(), 503, "SERVICE_UNAVAILABLE"), (ReplyTimeout(uuid.uuid4(), 10), 504, "GATEWAY_TIMEOUT")],
)
async def test_broker_trouble_is_a_spec_shaped_error(failure: Exception, status: int, code: str) -> None:
    async with _client(FakeLink(failure)) as client:
        response = await client.post("/start", json=START)
    assert response.status_code == status
    body = response.json()
    assert body["status"] == "error" and body["error_code"] == code and body["message"]


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"{not json", "body"),
        (b"[1]", "JSON object"),
        (json.dumps({**START, "start_time": "2025-01-10T09:00:00"}).encode(), "start_time"),
        (json.dumps({k: v for k, v in START.items() if k != "worker_id"}).encode(), "worker_id"),
    ],
)
async def test_bad_request_is_422_invalid_request_and_not_sent(raw: bytes, needle: str) -> None:
    link = FakeLink(NotConnected())
    async with _client(link) as client:
        response = await client.post("/start", content=raw)
    assert response.status_code == 422
    body = response.json()
    assert body["error_code"] == "INVALID_REQUEST"
    assert any(needle in line for line in body["data"]["errors"])
    assert link.sent == []


def test_parse_start_body_accepts_a_bom() -> None:
    assert parse_start_body(b"\xef\xbb\xbf" + json.dumps(START).encode()) == START


async def test_status_and_unknown_paths() -> None:
    async with _client(FakeLink(NotConnected())) as client:
        status = await client.get("/status")
        missing = await client.get("/nope")
        wrong_method = await client.get("/start")
    assert status.status_code == 200 and status.json()["counters"] == {"completed": 3}
    assert missing.status_code == 404 and missing.json()["error_code"] == "NOT_FOUND"
    assert wrong_method.status_code == 405


def test_bind_loopback_picks_a_free_port_and_refuses_a_taken_one() -> None:
    sock = bind_loopback("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        assert port > 0
        with pytest.raises(OSError):
            bind_loopback("127.0.0.1", port)
    finally:
        sock.close()
    assert isinstance(sock, socket.socket)
