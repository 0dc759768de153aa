"""Envelope v2 (mes_contracts/batch.py): records keep their own ids, a bad record is readable as bad alone."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from mes_contracts.batch import (
    MAX_BATCH_RECORDS,
    BatchEnvelope,
    BatchReply,
    envelope_version,
    make_batch,
)
from mes_contracts.envelope import Envelope, MessageType, Outcome, ReplyPayload, Source, make_envelope

SOURCE = Source(site="KR01", line="L1", station="ST06", gateway_id="gw-st06")


def _completions(n: int) -> list[Envelope]:
    return [make_envelope(MessageType.PROCESS_COMPLETED, SOURCE, i, {"n": i}, replay=i % 2 == 1) for i in range(n)]


def test_each_record_reads_back_as_the_v1_envelope_it_stands_for() -> None:
    envelopes = _completions(3)
    batch = BatchEnvelope.from_bytes(make_batch(envelopes).to_bytes())
    assert batch.v == 2 and batch.type is MessageType.PROCESS_COMPLETED
    assert [batch.read_record(i) for i in range(3)] == envelopes
    assert batch.message_id not in {e.message_id for e in envelopes}  # the batch id is its own


def test_a_malformed_record_fails_alone_and_keeps_its_position() -> None:
    document = json.loads(make_batch(_completions(3)).to_bytes())
    document["records"][1]["seq"] = -5
    document["records"][2] = {"message_id": "not-a-uuid", "payload": 7}
    batch = BatchEnvelope.model_validate(document)
    assert batch.read_record(0).payload == {"n": 0}
    with pytest.raises(ValidationError):
        batch.read_record(1)
    with pytest.raises(ValidationError):
        batch.read_record(2)
    assert batch.record_id(1) == uuid.UUID(document["records"][1]["message_id"])
    assert batch.record_id(2) == batch.message_id  # unreadable id: answered under the batch's


def test_batches_are_one_type_one_station_and_bounded() -> None:
    start = make_envelope(MessageType.PROCESS_START_REQUEST, SOURCE, 0, {})
    with pytest.raises(ValueError, match="not batched"):
        make_batch([start, start])
    other = make_envelope(MessageType.PROCESS_COMPLETED, SOURCE.model_copy(update={"station": "ST07"}), 1, {})
    with pytest.raises(ValueError, match="one type from one station"):
        make_batch([*_completions(1), other])
    document = json.loads(make_batch(_completions(1)).to_bytes())
    too_many: list[object] = document["records"] * (MAX_BATCH_RECORDS + 1)
    for records in ([], too_many):
        with pytest.raises(ValidationError):
            BatchEnvelope.model_validate(document | {"records": records})


def test_reply_round_trip() -> None:
    reply = ReplyPayload(in_reply_to=uuid.uuid4(), outcome=Outcome.ACCEPTED, http_status=201, body={})
    batch_reply = BatchReply(
        message_id=uuid.uuid4(),
        source=SOURCE,
        occurred_at=datetime(2026, 12, 5, tzinfo=UTC),
        in_reply_to=uuid.uuid4(),
        replies=[reply],
    )
    assert BatchReply.from_bytes(batch_reply.to_bytes()) == batch_reply


@pytest.mark.parametrize(
    ("raw", "version"),
    [
        (b'{"v":2,"message_id":"x"}', 2),
        (b'{"v":1,"type":"reply"}', 1),
        (b'{ "type": "x", "v": 7 }', 7),
        (b'{"type": "x"}', 1),
        (b'{"v": true}', None),
        (b'{"v": "2"}', None),
        (b"[1, 2]", None),
        (b"\xff\xfe", None),
        (b"[" * 100_000, None),
    ],
)
def test_envelope_version_routes_without_trusting_the_message(raw: bytes, version: int | None) -> None:
    assert envelope_version(raw) == version
