"""Translate one MQTT message into a use-case call and a reply envelope; no MQTT client in here."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import ValidationError

from cloud_api.adapters.database import Database
from cloud_api.adapters.start_fast import FastStartConnections
from cloud_api.domain.errors import DomainError
from cloud_api.ingestor import faults
from cloud_api.services.dead_letters import Letter
from cloud_api.services.handlers import Answer, error_answer, handle_completion, handle_start
from cloud_api.services.measurement_ingest import handle_measurement
from cloud_api.services.print_results import handle_print_result
from cloud_api.services.process_complete import CompletionSource
from cloud_api.services.start_fast import handle_station_start
from mes_contracts.batch import BatchEnvelope
from mes_contracts.completion import CompletionEvent
from mes_contracts.envelope import Envelope, MessageType, ReplyPayload, Source, make_envelope
from mes_contracts.errors import ErrorCode
from mes_contracts.process_data import describe_validation_error
from mes_contracts.topics import Name, ParsedTopic, parse_topic

log = logging.getLogger(__name__)
_ID_SCAN_BYTES = 1024  # our envelopes put message_id second; a hand-made one may not, and then has no id
_UUID = rb"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_MESSAGE_ID_RE = re.compile(rb'"message_id"\s*:\s*"(' + _UUID + rb')"')


class UnreadableMessage(ValueError):
    """A message that is not an MES envelope: counted, dead-lettered, and answered INVALID_REQUEST when it names
    a response topic (the topic still tells whose it is)."""

    def __init__(self, reason: str, parsed: ParsedTopic | None):
        super().__init__(reason)
        self.parsed = parsed


@dataclass(frozen=True, slots=True)
class Handled:
    request: Envelope
    answer: Answer


M = TypeVar("M", Envelope, BatchEnvelope)


def read_message(topic: str, raw: bytes, model: type[M]) -> tuple[ParsedTopic, M]:
    """The topic and the message as `model` (a v1 Envelope or a v2 BatchEnvelope), else UnreadableMessage."""
    parsed = None
    try:
        parsed = parse_topic(topic)
        message = model.from_bytes(raw)
    except ValidationError as error:
        # One line naming the fields (dead letters keep the first line only), e.g. "v: Input should be 1" for a
        # gateway newer than this centre (docs/ops/upgrade.md: upgrade the centre first).
        raise UnreadableMessage(f"{topic}: {'; '.join(describe_validation_error(error))}", parsed) from error
    except (ValueError, RecursionError) as error:
        raise UnreadableMessage(f"{topic}: {error}", parsed) from error
    return parsed, message


def read_envelope(topic: str, raw: bytes) -> tuple[ParsedTopic, Envelope]:
    return read_message(topic, raw, Envelope)


async def handle_envelope(
    db: Database,
    topic: str,
    parsed: ParsedTopic,
    envelope: Envelope,
    lang: str,
    fast_starts: FastStartConnections | None = None,
) -> Handled:
    """Answer one message read by `read_envelope` (the ingestor reads each message once, to route it).
    `fast_starts`: the ingestor's psycopg connections for the start (services/start_fast.py)."""
    station = parsed.address.prefix
    if (envelope.source.site, envelope.source.line, envelope.source.station) != (
        parsed.address.site,
        parsed.address.line,
        parsed.address.station,
    ):
        # A station speaks only for itself: the topic (which the broker's ACL guards) must match the source.
        error = DomainError(ErrorCode.INVALID_REQUEST, {"topic": topic}, "source does not match topic")
        return Handled(envelope, error_answer(error, lang))
    if envelope.type is MessageType.PROCESS_START_REQUEST and fast_starts is not None:
        answer = await handle_station_start(
            db, fast_starts, envelope.payload, station, envelope.message_id, lang, faults.HOOKS
        )
    elif envelope.type is MessageType.PROCESS_START_REQUEST:
        answer = await handle_start(db, envelope.payload, station, envelope.message_id, lang, hooks=faults.HOOKS)
    elif envelope.type is MessageType.PROCESS_COMPLETED:
        record, source = _completion(envelope, station)
        answer = await handle_completion(db, record, source, lang, faults.HOOKS)
    elif envelope.type is MessageType.LABEL_PRINT_RESULT and parsed.name == Name.PRINT_RESULT:
        answer = await handle_print_result(db, envelope.payload, station, envelope.message_id, lang)
    elif envelope.type is MessageType.MEASUREMENT and parsed.name == Name.MEASUREMENT:
        answer = await handle_measurement(db, envelope.payload, station, envelope.message_id, lang, faults.HOOKS)
    else:
        error = DomainError(ErrorCode.INVALID_REQUEST, {"type": envelope.type.value}, "unsupported message type")
        answer = error_answer(error, lang)
    return Handled(envelope, answer)


def completion_item(
    parsed: ParsedTopic, envelope: Envelope
) -> tuple[Envelope, tuple[dict[str, Any], CompletionSource]] | None:
    """A well-formed completion from the station that sent it, ready for the batch path; None for anything else
    (forged source, other types), which takes the one-by-one path and its error answers."""
    address = parsed.address
    if envelope.type is not MessageType.PROCESS_COMPLETED or (
        envelope.source.site,
        envelope.source.line,
        envelope.source.station,
    ) != (address.site, address.line, address.station):
        return None
    record, source = _completion(envelope, address.prefix)
    return envelope, (record, source)


def _completion(envelope: Envelope, station: str) -> tuple[dict[str, Any], CompletionSource]:
    try:
        event = CompletionEvent.model_validate(envelope.payload)
    except ValidationError:
        # The record is validated by the use case, which answers INVALID_PROCESS_DATA for a bad one.
        event = CompletionEvent(record={})
    source = CompletionSource(
        station=station,
        message_id=envelope.message_id,
        file_name=event.file_name,
        sha256=event.sha256,
        replay=envelope.replay,
    )
    return event.record, source


def letter_of(topic: str, raw: bytes, parsed: ParsedTopic | None, envelope: Envelope | None) -> Letter:
    """The message as received, for the dead-letter table; what could not be read stays None."""
    if parsed is None:
        # A message refused before it was read (too large) still names its station in the topic.
        with suppress(ValueError):
            parsed = parse_topic(topic)
    station = parsed.address.prefix if parsed else None  # the same form as processed_messages.source_station
    if envelope is None:
        return Letter(topic, raw, guess_message_id(raw), None, station)
    return Letter(topic, raw, envelope.message_id, envelope.type.value, station)


def guess_message_id(raw: bytes) -> uuid.UUID | None:
    """The message id of an envelope that failed to parse, when its start still shows one."""
    match = _MESSAGE_ID_RE.search(raw[:_ID_SCAN_BYTES])
    return uuid.UUID(match[1].decode()) if match else None


def surrogate_id(raw: bytes) -> uuid.UUID:
    """A stable id to answer a message that carries none (the first 128 bits of its sha256)."""
    return uuid.UUID(bytes=hashlib.sha256(raw).digest()[:16])


def reply_envelope(in_reply_to: uuid.UUID, answer: Answer, responder: Source, seq: int) -> Envelope:
    reply = ReplyPayload(
        in_reply_to=in_reply_to, outcome=answer.outcome, http_status=answer.http_status, body=answer.body
    )
    return make_envelope(MessageType.REPLY, responder, seq, reply.model_dump(mode="json"), message_id=str(uuid.uuid4()))


class ReplyTemplate:
    """Reply envelopes from a pre-serialised skeleton: the same JSON as `reply_envelope(...).to_bytes()` (the
    same keys in the same order; tests/test_ingestor_lean.py checks it), without building two pydantic models per
    reply. A body json cannot write (never seen: bodies are JSON-ready dicts) takes the pydantic way. The v2 reply
    (mes_contracts/batch.BatchReply) is written the same way: one skeleton, one payload per record."""

    def __init__(self, responder: Source):
        self._responder = responder
        source = responder.model_dump_json().replace("%", "%%")
        self._head = '{"v":1,"message_id":"%s","type":"' + MessageType.REPLY.value + '","source":' + source + ","
        self._batch_head = '{"v":2,"message_id":"%s","type":"' + MessageType.REPLY.value + '","source":' + source

    def render(self, in_reply_to: uuid.UUID, answer: Answer, seq: int) -> bytes:
        payload = _payload_json(in_reply_to, answer)
        if payload is None:
            return reply_envelope(in_reply_to, answer, self._responder, seq).to_bytes()
        return (
            self._head % uuid.uuid4()
            + f'"occurred_at":"{_now()}","seq":{int(seq)},"replay":false,"payload":{payload}}}'
        ).encode()

    def render_batch(self, in_reply_to: uuid.UUID, replies: Iterable[tuple[uuid.UUID, Answer]]) -> bytes:
        """The one reply to a v2 message (`in_reply_to` = its batch id): one ReplyPayload per record, in order."""
        payloads = []
        for record_id, answer in replies:
            payload = _payload_json(record_id, answer)
            if payload is None:
                payload = ReplyPayload(
                    in_reply_to=record_id, outcome=answer.outcome, http_status=answer.http_status, body=answer.body
                ).model_dump_json()
            payloads.append(payload)
        return (
            self._batch_head % uuid.uuid4()
            + f',"occurred_at":"{_now()}","in_reply_to":"{in_reply_to}","replies":[{",".join(payloads)}]}}'
        ).encode()


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _payload_json(in_reply_to: uuid.UUID, answer: Answer) -> str | None:
    """ReplyPayload's JSON, or None when json cannot write the body (the caller takes pydantic's way)."""
    try:
        body = json.dumps(answer.body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        return None
    return (
        f'{{"in_reply_to":"{in_reply_to}","outcome":"{answer.outcome.value}",'
        f'"http_status":{int(answer.http_status)},"body":{body}}}'
    )
