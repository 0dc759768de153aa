"""Envelope version 2: many records of one type in one MQTT message, and the one reply that answers them all.

Version 1 (envelope.py) carries one record per message and stays valid both ways: a gateway sends a lone record
as v1, and a gateway older than v2 never sends anything else. A v2 message carries up to `MAX_BATCH_RECORDS`
records of one batchable type from one station. Each record keeps its own message id, seq, time and replay flag,
so exactly-once stays per record (the centre claims each record's id in the transaction that stores it) and a
poison record fails alone. The batch's own `message_id` only correlates the reply; the centre never stores it.

Wire shape (JSON):

    station → centre  {"v": 2, "message_id", "type", "source", "occurred_at",
                       "records": [{"message_id", "occurred_at", "seq", "replay", "payload"}, ...]}
    centre → station  {"v": 2, "message_id", "type": "reply", "source", "occurred_at", "in_reply_to": <batch id>,
                       "replies": [<ReplyPayload of record 0>, <of record 1>, ...]}

A reply holds exactly one `ReplyPayload` per record, in the records' order, each with that record's id as
`in_reply_to`. The centre reads records one by one (`BatchEnvelope.records` are raw objects; `read_record`
validates one), so a malformed record gets its own rejection and the others are stored. A record whose id cannot
be read is answered with the batch's id as `in_reply_to`, at its position.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from mes_contracts.envelope import Envelope, MessageType, ReplyPayload, Source, new_message_id

# What may travel in a batch: station events the centre answers with an outcome. Starts stay one per message
# (an operator waits on each).
BATCHABLE_TYPES = frozenset({MessageType.PROCESS_COMPLETED, MessageType.LABEL_PRINT_RESULT, MessageType.MEASUREMENT})
MAX_BATCH_RECORDS = 200
# A whole v2 message, JSON bytes; a gateway packs records until either bound. One measurement batch may be 1 MiB
# (measurement.MAX_BATCH_BYTES), so a record bigger than what is left goes in the next message.
MAX_BATCH_MESSAGE_BYTES = 4 << 20
BATCH_VERSION: Final = 2


class BatchRecord(BaseModel):
    """One record of a batch: what a v1 envelope carries besides the fields the batch shares."""

    model_config = ConfigDict(frozen=True)

    message_id: uuid.UUID
    occurred_at: AwareDatetime
    seq: int = Field(ge=0)
    replay: bool = False
    payload: dict[str, Any]

    @classmethod
    def of(cls, envelope: Envelope) -> BatchRecord:
        return cls(
            message_id=envelope.message_id,
            occurred_at=envelope.occurred_at,
            seq=envelope.seq,
            replay=envelope.replay,
            payload=envelope.payload,
        )


class BatchEnvelope(BaseModel):
    """Many records from one station, one type. `records` stay raw: each is read alone by `read_record`."""

    model_config = ConfigDict(frozen=True)

    v: Literal[2] = 2
    message_id: uuid.UUID
    type: MessageType
    source: Source
    occurred_at: AwareDatetime
    records: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH_RECORDS)

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> BatchEnvelope:
        return cls.model_validate_json(raw)

    def read_record(self, index: int) -> Envelope:
        """Record `index` as the v1 envelope it stands for; raises pydantic's ValidationError if malformed."""
        record = BatchRecord.model_validate(self.records[index])
        return Envelope(
            message_id=record.message_id,
            type=self.type,
            source=self.source,
            occurred_at=record.occurred_at,
            seq=record.seq,
            replay=record.replay,
            payload=record.payload,
        )

    def record_id(self, index: int) -> uuid.UUID:
        """Record `index`'s id when readable, else the batch's (the reply's `in_reply_to` for that position)."""
        try:
            return uuid.UUID(str(self.records[index].get("message_id")))
        except (ValueError, TypeError, AttributeError):
            return self.message_id


def make_batch(envelopes: list[Envelope], message_id: str | None = None) -> BatchEnvelope:
    """One v2 message of `envelopes` (same type and source, at least one); the batch id is minted here."""
    first = envelopes[0]
    if first.type not in BATCHABLE_TYPES:
        raise ValueError(f"{first.type} records are not batched")
    if any(e.type is not first.type or e.source != first.source for e in envelopes):
        raise ValueError("a batch holds records of one type from one station")
    return BatchEnvelope(
        message_id=uuid.UUID(message_id or new_message_id()),
        type=first.type,
        source=first.source,
        occurred_at=datetime.now(UTC),
        records=[BatchRecord.of(e).model_dump(mode="json") for e in envelopes],
    )


class BatchReply(BaseModel):
    """The centre's answer to a v2 message: one reply per record, in the records' order."""

    model_config = ConfigDict(frozen=True)

    v: Literal[2] = 2
    message_id: uuid.UUID
    type: Literal[MessageType.REPLY] = MessageType.REPLY
    source: Source
    occurred_at: AwareDatetime
    in_reply_to: uuid.UUID
    replies: list[ReplyPayload]

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> BatchReply:
        return cls.model_validate_json(raw)


_PREFIX = b'{"v":'


def envelope_version(raw: bytes) -> int | None:
    """The `v` of a JSON message (1 when absent), or None if `raw` is not a JSON object with an integer `v`.

    Routing only: the chosen model validates the rest. Our own serialisers write `v` first, so the common case is
    a prefix check; anything else (spaces, another key order) pays one full parse."""
    if raw.startswith(_PREFIX) and raw[6:7] == b"," and raw[5:6].isdigit():
        return raw[5] - 0x30
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    version = document.get("v", 1)
    return version if isinstance(version, int) and not isinstance(version, bool) else None
