"""Edge gateway: decoding replies on the reply topic and matching them to waiting requests."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from edge_gateway.ports import NotConnected
from edge_gateway.replies import PendingReplies, correlation_id, decode_reply
from mes_contracts.envelope import MessageType, Outcome, ReplyPayload, Source, make_envelope
from mes_contracts.topics import StationAddress

ADDRESS = StationAddress("KR", "L1", "st03")
CENTRE = Source(site="central", line="central", station="ingestor", gateway_id="ingestor")


def reply_bytes(in_reply_to: uuid.UUID, outcome: Outcome = Outcome.ACCEPTED, status: int = 200) -> bytes:
    payload = ReplyPayload(
        in_reply_to=in_reply_to,
        outcome=outcome,
        http_status=status,
        body={"status": "success", "message": "ok", "data": {}},
    )
    return make_envelope(MessageType.REPLY, CENTRE, 1, payload.model_dump(mode="json")).to_bytes()


def test_decode_reply() -> None:
    request_id = uuid.uuid4()
    reply = decode_reply(reply_bytes(request_id, Outcome.DUPLICATE), str(request_id).encode())
    assert isinstance(reply, ReplyPayload)
    assert (reply.in_reply_to, reply.outcome, reply.http_status) == (request_id, Outcome.DUPLICATE, 200)


def test_in_reply_to_wins_over_disagreeing_correlation_data() -> None:
    request_id = uuid.uuid4()
    reply = decode_reply(reply_bytes(request_id), str(uuid.uuid4()).encode())
    assert reply is not None and reply.in_reply_to == request_id


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"{}",
        make_envelope(MessageType.PROCESS_COMPLETED, Source.of(ADDRESS, "gw"), 0, {}).to_bytes(),
        make_envelope(MessageType.REPLY, CENTRE, 0, {"outcome": "accepted"}).to_bytes(),
    ],
)
def test_anything_else_is_ignored(raw: bytes) -> None:
    assert decode_reply(raw) is None


def test_correlation_id() -> None:
    value = uuid.uuid4()
    assert correlation_id(str(value).encode()) == value
    assert correlation_id(None) is None
    assert correlation_id(b"\xff\xfe") is None
    assert correlation_id(b"nope") is None


async def test_pending_replies_resolve_and_fail() -> None:
    pending = PendingReplies()
    first, second = uuid.uuid4(), uuid.uuid4()
    future = pending.register(first)
    with pytest.raises(RuntimeError):
        pending.register(first)
    reply = decode_reply(reply_bytes(first))
    assert reply is not None and pending.deliver(reply)
    assert (await future).in_reply_to == first
    assert not pending.deliver(reply)  # late duplicate
    lost = pending.register(second)
    pending.fail_all("link lost")
    with pytest.raises(NotConnected):
        await asyncio.wait_for(lost, 1)
    assert len(pending) == 0
