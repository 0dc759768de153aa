"""Envelope v2 on the station side (mes_contracts/batch.py): due records packed into messages, encoded lean.

The outbox keeps each record's v1 envelope JSON as first minted. A v2 message is made from those strings with the
C json module only (no pydantic model per record): the wire shape is `make_batch`'s, which tests/test_gateway_batch
checks by reading every message back with `BatchEnvelope`. A lone record never gets here: it goes as v1, so the
latency of a file that arrives alone and the centres older than v2 are unchanged.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mes_contracts.batch import BATCH_VERSION, BATCHABLE_TYPES, MAX_BATCH_MESSAGE_BYTES, MAX_BATCH_RECORDS
from mes_contracts.envelope import MessageType, new_message_id

# The v2 header (ids, type, source, time, brackets), generously: source fields are short and bounded.
BATCH_OVERHEAD_BYTES = 1024
# A record in v2 is its v1 envelope minus `v`, `type` and `source`, plus a comma: the v1 size bounds it.
RECORD_SEPARATOR_BYTES = 1


class Unbatchable(ValueError):
    """These records cannot share a v2 message (another type or station, or an envelope that does not read):
    each goes alone as v1, where a bad one fails by itself."""


@dataclass(frozen=True, slots=True)
class OutgoingBatch:
    """One v2 message ready for the wire: its own id (the reply's `in_reply_to`) and its records' ids in order."""

    message_id: uuid.UUID
    type: MessageType
    record_ids: tuple[uuid.UUID, ...]
    payload: bytes


def pack(sizes: Sequence[int], max_records: int, max_bytes: int = MAX_BATCH_MESSAGE_BYTES) -> list[range]:
    """Consecutive runs of indexes into `sizes` (each record's v1 envelope bytes), in order, each run within
    `max_records` records and `max_bytes` bytes as a v2 message. A run of one is sent as v1; a record too big
    for any batch is always a run of one."""
    limit = max(1, min(max_records, MAX_BATCH_RECORDS))
    runs: list[range] = []
    start, used = 0, BATCH_OVERHEAD_BYTES
    for index, size in enumerate(sizes):
        cost = size + RECORD_SEPARATOR_BYTES
        if index > start and (index - start >= limit or used + cost > max_bytes):
            runs.append(range(start, index))
            start, used = index, BATCH_OVERHEAD_BYTES
        used += cost
    if start < len(sizes):
        runs.append(range(start, len(sizes)))
    return runs


def encode_batch(envelopes: Sequence[str | bytes], replays: Sequence[bool]) -> OutgoingBatch:
    """The v2 message of stored v1 envelopes (one batchable type, one station), each with its own replay flag;
    raises Unbatchable when they cannot share one."""
    if len(envelopes) != len(replays) or not envelopes:
        raise Unbatchable("one replay flag per envelope, at least one envelope")
    try:
        return _encode([json.loads(raw) for raw in envelopes], replays)
    except Unbatchable:
        raise
    except (ValueError, KeyError, TypeError, RecursionError) as error:
        raise Unbatchable(f"a stored envelope does not read: {error!r}") from error


def _encode(documents: list[dict[str, Any]], replays: Sequence[bool]) -> OutgoingBatch:
    first = documents[0]
    message_type = MessageType(first["type"])
    if message_type not in BATCHABLE_TYPES:
        raise Unbatchable(f"{message_type} records are not batched")
    if any(d["type"] != first["type"] or d["source"] != first["source"] for d in documents):
        raise Unbatchable("a batch holds records of one type from one station")
    records = [
        {
            "message_id": d["message_id"],
            "occurred_at": d["occurred_at"],
            "seq": d["seq"],
            "replay": replay,
            "payload": d["payload"],
        }
        for d, replay in zip(documents, replays, strict=True)
    ]
    batch_id = new_message_id()
    document = {
        "v": BATCH_VERSION,  # first: the centre routes on a prefix check (mes_contracts.batch.envelope_version)
        "message_id": batch_id,
        "type": message_type.value,
        "source": first["source"],
        "occurred_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "records": records,
    }
    return OutgoingBatch(
        uuid.UUID(batch_id),
        message_type,
        tuple(uuid.UUID(d["message_id"]) for d in documents),
        json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode(),
    )
