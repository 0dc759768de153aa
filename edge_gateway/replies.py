"""Reply decoding (v1 replies and v2 batch replies) and the table of requests waiting for their reply, keyed by the
request's message id (a v2 message's own id)."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from pydantic import ValidationError

from edge_gateway.ports import BatchesUnsupported, NotConnected
from mes_contracts.batch import BATCH_VERSION, BatchReply, envelope_version
from mes_contracts.envelope import Envelope, MessageType, Outcome, ReplyPayload
from mes_contracts.errors import ErrorCode

logger = logging.getLogger(__name__)


def correlation_id(correlation_data: bytes | None) -> uuid.UUID | None:
    """The message id carried as MQTT 5 correlation data (`str(message_id).encode()`), if readable."""
    if not correlation_data:
        return None
    try:
        return uuid.UUID(correlation_data.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None


def _refuse_constant(token: str) -> Any:
    raise ValueError(f"{token} is not valid JSON")


def light_reply(raw: bytes) -> ReplyPayload | None:
    """The common case cheaply: a v1 REPLY envelope whose payload fields have exactly the expected JSON types.

    The centre validated and built this reply; only the four fields the gateway acts on are checked (types, the
    outcome's value, a parseable UUID), and `model_construct` skips pydantic's second pass over them. Anything
    else, however small the surprise, returns None and goes through the full validation in `decode_reply`.
    """
    reply = _light(raw)
    return reply if isinstance(reply, ReplyPayload) else None


def _light(raw: bytes) -> Answer | None:
    """`light_reply` for v1, and the same for a v2 `BatchReply` (every one of its replies checked alike)."""
    try:
        document = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # not UTF-8 / not JSON / too deep: the full path says what it is
        return None
    if type(document) is not dict or document.get("type") != MessageType.REPLY.value:
        return None
    if type(document.get("message_id")) is not str:
        return None
    version = document.get("v")
    if version == 1 and type(version) is int:
        return _light_payload(document.get("payload"))
    if version != BATCH_VERSION or type(version) is not int:
        return None
    batch_id, items = document.get("in_reply_to"), document.get("replies")
    if type(batch_id) is not str or type(items) is not list or type(document.get("source")) is not dict:
        return None
    replies = [_light_payload(item) for item in items]
    if any(reply is None for reply in replies):
        return None
    try:
        return BatchAnswer(uuid.UUID(batch_id), cast(list[ReplyPayload], replies))
    except ValueError:
        return None


def _light_payload(payload: Any) -> ReplyPayload | None:
    if type(payload) is not dict:
        return None
    in_reply_to, outcome = payload.get("in_reply_to"), payload.get("outcome")
    http_status, body = payload.get("http_status"), payload.get("body")
    if type(in_reply_to) is not str or type(http_status) is not int or type(body) is not dict:
        return None
    if outcome not in _OUTCOMES:
        return None
    try:
        request_id = uuid.UUID(in_reply_to)
    except ValueError:
        return None
    return ReplyPayload.model_construct(
        in_reply_to=request_id, outcome=Outcome(outcome), http_status=http_status, body=body
    )


_OUTCOMES = frozenset(outcome.value for outcome in Outcome)


def decode_reply(raw: bytes, correlation_data: bytes | None = None) -> Answer | None:
    """The reply inside a REPLY envelope (v1), or a v2 `BatchReply`'s replies; None (logged) for anything else on
    the reply topic."""
    reply = _light(raw)
    if reply is None and envelope_version(raw) == BATCH_VERSION:
        reply = _full_batch_reply(raw)
        if reply is None:
            return None
    elif reply is None:
        reply = _full_reply(raw)
        if reply is None:
            return None
    _check_correlation(reply, correlation_data)
    return reply


def _full_reply(raw: bytes) -> ReplyPayload | None:
    try:
        envelope = Envelope.from_bytes(raw)
    except ValidationError as error:
        logger.warning("ignoring unreadable message on the reply topic: %s", error.errors()[:3])
        return None
    if envelope.type is not MessageType.REPLY:
        logger.warning("ignoring %s message %s on the reply topic", envelope.type, envelope.message_id)
        return None
    try:
        return ReplyPayload.model_validate(envelope.payload)
    except ValidationError as error:
        logger.warning("ignoring reply %s with a bad payload: %s", envelope.message_id, error.errors()[:3])
        return None


def _full_batch_reply(raw: bytes) -> BatchAnswer | None:
    try:
        batch = BatchReply.from_bytes(raw)
    except ValidationError as error:
        logger.warning("ignoring unreadable v2 message on the reply topic: %s", error.errors()[:3])
        return None
    return BatchAnswer(batch.in_reply_to, list(batch.replies))


def _check_correlation(reply: Answer, correlation_data: bytes | None) -> None:
    correlated = correlation_id(correlation_data)
    if correlated is not None and correlated != reply.in_reply_to:
        logger.warning(
            "reply to %s: correlation data %s disagrees with in_reply_to; using in_reply_to",
            reply.in_reply_to,
            correlated,
        )


def match_replies(record_ids: Sequence[uuid.UUID], replies: Sequence[ReplyPayload]) -> list[ReplyPayload | None]:
    """Each record's reply from a v2 answer; None (logged) for a record the answer has no reply for.

    The centre answers in the records' order, so the common case is one comparison per record. A reply with
    another count or other ids is never read as a rejection: what does not match is simply unanswered (the
    record is sent again later under the same id, and the centre answers it from what it stored)."""
    if len(replies) == len(record_ids) and all(r.in_reply_to == i for r, i in zip(replies, record_ids, strict=True)):
        return list(replies)
    by_id: dict[uuid.UUID, ReplyPayload] = {}
    for reply in replies:
        by_id.setdefault(reply.in_reply_to, reply)
    matched = [by_id.get(record_id) for record_id in record_ids]
    logger.warning(
        "batch answer does not match its records (%d replies for %d records, %d unmatched): the unmatched records "
        "count as unanswered",
        len(replies),
        len(record_ids),
        sum(1 for reply in matched if reply is None),
    )
    return matched


def batch_outcomes(answer: Answer, batch_id: uuid.UUID, record_ids: Sequence[uuid.UUID]) -> list[ReplyPayload | None]:
    """Each record's reply from the answer to v2 message `batch_id`. A v1 answer to the whole message is either a
    centre older than v2 refusing it (raises BatchesUnsupported: nothing was stored) or, for anything else, no
    answer for any of its records (logged): never a rejection of them."""
    if isinstance(answer, BatchAnswer):
        return match_replies(record_ids, answer.replies)
    if is_version_refusal(answer):
        raise BatchesUnsupported(f"the centre refused v2 message {batch_id} ({answer.body.get('error_code')})")
    logger.warning(
        "the centre answered v2 message %s as a whole (%s %s): its %d record(s) count as unanswered",
        batch_id,
        answer.http_status,
        answer.body.get("error_code"),
        len(record_ids),
    )
    return [None] * len(record_ids)


def is_version_refusal(reply: ReplyPayload) -> bool:
    """A centre older than envelope v2 refusing a v2 message: UNSUPPORTED_MESSAGE_VERSION, or the INVALID_REQUEST
    its envelope check gives (`v: Input should be 1`) when it does not know that code either."""
    code = reply.body.get("error_code")
    if code == ErrorCode.UNSUPPORTED_MESSAGE_VERSION.value:
        return True
    data = reply.body.get("data")
    detail = data.get("error") if isinstance(data, dict) else None
    return code == ErrorCode.INVALID_REQUEST.value and isinstance(detail, str) and "v: Input should be 1" in detail


@dataclass(frozen=True, slots=True)
class BatchAnswer:
    """A v2 `BatchReply` as the gateway uses it: the batch id it answers and one reply per record."""

    in_reply_to: uuid.UUID
    replies: list[ReplyPayload]


Answer = ReplyPayload | BatchAnswer


class PendingReplies:
    """Futures of in-flight requests; resolved by `deliver`, failed all at once when the link drops."""

    def __init__(self) -> None:
        self._waiting: dict[uuid.UUID, asyncio.Future[Answer]] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def register(self, message_id: uuid.UUID) -> asyncio.Future[Answer]:
        if message_id in self._waiting:
            raise RuntimeError(f"a request with message id {message_id} is already waiting")
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting[message_id] = future
        return future

    def forget(self, message_id: uuid.UUID) -> None:
        self._waiting.pop(message_id, None)

    def deliver(self, reply: Answer) -> bool:
        """Resolve the waiting request; False for a late or unknown reply."""
        future = self._waiting.pop(reply.in_reply_to, None)
        if future is None or future.done():
            logger.debug("no request waiting for reply to %s (late or unknown)", reply.in_reply_to)
            return False
        future.set_result(reply)
        return True

    def fail_all(self, reason: str) -> None:
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(NotConnected(reason))
