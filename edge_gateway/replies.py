"""Reply decoding and the table of requests waiting for their reply, keyed by the request's message id."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

from pydantic import ValidationError

from edge_gateway.ports import NotConnected
from mes_contracts.envelope import Envelope, MessageType, Outcome, ReplyPayload

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
    try:
        document = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # not UTF-8 / not JSON / too deep: the full path says what it is
        return None
    if type(document) is not dict or document.get("v") != 1 or document.get("type") != MessageType.REPLY.value:
        return None
    payload = document.get("payload")
    if type(payload) is not dict:
        return None
    in_reply_to, outcome = payload.get("in_reply_to"), payload.get("outcome")
    http_status, body = payload.get("http_status"), payload.get("body")
    if type(in_reply_to) is not str or type(http_status) is not int or type(body) is not dict:
        return None
    if outcome not in _OUTCOMES or type(document.get("message_id")) is not str:
        return None
    try:
        request_id = uuid.UUID(in_reply_to)
    except ValueError:
        return None
    return ReplyPayload.model_construct(
        in_reply_to=request_id, outcome=Outcome(outcome), http_status=http_status, body=body
    )


_OUTCOMES = frozenset(outcome.value for outcome in Outcome)


def decode_reply(raw: bytes, correlation_data: bytes | None = None) -> ReplyPayload | None:
    """The reply inside a REPLY envelope; None (logged) for anything else on the reply topic."""
    reply = light_reply(raw)
    if reply is not None:
        _check_correlation(reply, correlation_data)
        return reply
    try:
        envelope = Envelope.from_bytes(raw)
    except ValidationError as error:
        logger.warning("ignoring unreadable message on the reply topic: %s", error.errors()[:3])
        return None
    if envelope.type is not MessageType.REPLY:
        logger.warning("ignoring %s message %s on the reply topic", envelope.type, envelope.message_id)
        return None
    try:
        reply = ReplyPayload.model_validate(envelope.payload)
    except ValidationError as error:
        logger.warning("ignoring reply %s with a bad payload: %s", envelope.message_id, error.errors()[:3])
        return None
    _check_correlation(reply, correlation_data)
    return reply


def _check_correlation(reply: ReplyPayload, correlation_data: bytes | None) -> None:
    correlated = correlation_id(correlation_data)
    if correlated is not None and correlated != reply.in_reply_to:
        logger.warning(
            "reply to %s: correlation data %s disagrees with in_reply_to; using in_reply_to",
            reply.in_reply_to,
            correlated,
        )


class PendingReplies:
    """Futures of in-flight requests; resolved by `deliver`, failed all at once when the link drops."""

    def __init__(self) -> None:
        self._waiting: dict[uuid.UUID, asyncio.Future[ReplyPayload]] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def register(self, message_id: uuid.UUID) -> asyncio.Future[ReplyPayload]:
        if message_id in self._waiting:
            raise RuntimeError(f"a request with message id {message_id} is already waiting")
        future: asyncio.Future[ReplyPayload] = asyncio.get_running_loop().create_future()
        self._waiting[message_id] = future
        return future

    def forget(self, message_id: uuid.UUID) -> None:
        self._waiting.pop(message_id, None)

    def deliver(self, reply: ReplyPayload) -> bool:
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
