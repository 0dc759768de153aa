"""Envelope v2 at the centre: one MQTT message of many records (mes_contracts/batch.py), one reply for them all.

Each record is what a v1 message would have been: it is read alone (a malformed record is refused and
dead-lettered at its own position), stored through the same use case, claimed under its own message id, and
answered in the message's one `BatchReply` at its position. Completions join the CompletionBatcher (one
transaction for many records, v1 and v2 alike); print results and measurements are stored here one record at a
time, each in its own transaction (services.handlers.run_once), in the message's order.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from pydantic import ValidationError

from cloud_api.adapters.database import Database
from cloud_api.domain.errors import DomainError
from cloud_api.ingestor import faults, metrics
from cloud_api.ingestor.handler import UnreadableMessage, read_message
from cloud_api.services.dead_letters import Failure, Letter, quarantine, store_or_quarantine
from cloud_api.services.handlers import Answer, error_answer
from cloud_api.services.measurement_ingest import handle_measurement
from cloud_api.services.print_results import handle_print_result
from mes_contracts.batch import BATCHABLE_TYPES, BatchEnvelope
from mes_contracts.envelope import Envelope, MessageType
from mes_contracts.errors import ErrorCode
from mes_contracts.process_data import describe_validation_error
from mes_contracts.topics import Name, ParsedTopic, parse_topic

T = TypeVar("T")
Retry = Callable[[Callable[[], Awaitable[T]]], Awaitable[T]]
# The topic name each batchable type must arrive on, as the v1 handler requires (completions: any, as in v1).
_TOPIC_NAME = {MessageType.LABEL_PRINT_RESULT: Name.PRINT_RESULT, MessageType.MEASUREMENT: Name.MEASUREMENT}


def read_batch(topic: str, raw: bytes) -> tuple[ParsedTopic, BatchEnvelope]:
    """The v2 message; anything short of a well-formed one of a batchable type (no records, more than
    MAX_BATCH_RECORDS, not a JSON object...) is unreadable as a whole, like a malformed v1 envelope."""
    parsed, batch = read_message(topic, raw, BatchEnvelope)
    if batch.type not in BATCHABLE_TYPES:
        raise UnreadableMessage(f"{topic}: type: {batch.type.value} records are not sent in batches", parsed)
    return parsed, batch


class BatchAnswers:
    """The answers to one v2 message, filled in any order by whoever stores each record; whoever fills the last
    one sends the reply (`fill` says so), so it leaves exactly once."""

    __slots__ = ("answers", "batch", "ids", "message", "missing", "topic")

    def __init__(self, message: Any, topic: str, batch: BatchEnvelope) -> None:
        self.message = message  # the aiomqtt.Message: where the reply goes
        self.topic = topic
        self.batch = batch
        self.ids: list[uuid.UUID | None] = [None] * len(batch.records)  # filled from the readable records
        self.answers: list[Answer | None] = [None] * len(batch.records)
        self.missing = len(batch.records)

    def fill(self, index: int, answer: Answer) -> bool:
        """Record `index`'s answer; True when it was the last one missing."""
        if self.answers[index] is None:
            self.missing -= 1
        self.answers[index] = answer
        return self.missing == 0

    def replies(self) -> list[tuple[uuid.UUID, Answer]]:
        """(in_reply_to, answer) per record, in order; a record whose id could not be read: the batch's id."""
        out = []
        for index, answer in enumerate(self.answers):
            assert answer is not None, "replied before every record was answered"
            record_id = self.ids[index]
            out.append((record_id if record_id is not None else self.batch.record_id(index), answer))
        return out

    def letter(self, index: int) -> Letter:
        """Record `index` for the dead-letter table (built only when one is written): a readable record as the v1
        envelope it stands for (self-contained, and sendable again as it is), a malformed one as received."""
        try:
            payload = self.batch.read_record(index).to_bytes()
        except ValidationError:
            record = self.batch.records[index]
            payload = json.dumps(record, ensure_ascii=False, default=str).encode("utf-8", "backslashreplace")
        record_id = self.batch.record_id(index)
        message_id = None if record_id == self.batch.message_id else record_id
        station = _station(self.topic)
        return Letter(self.topic, payload, message_id, self.batch.type.value, station)


@dataclass(slots=True)
class Split:
    """A v2 message's records sorted by what happens to them (indexes into `records`)."""

    readable: list[tuple[int, Envelope]] = field(default_factory=list)
    malformed: list[tuple[int, Failure]] = field(default_factory=list)
    refused: list[tuple[int, Answer]] = field(default_factory=list)  # answered, never stored (forged source...)

    @property
    def needs_task(self) -> bool:
        """Work besides the completion batcher: refusals to store, or records stored one by one here."""
        return bool(self.malformed) or (bool(self.readable) and self.readable[0][1].type in _TOPIC_NAME)


def split(topic: str, parsed: ParsedTopic, answers: BatchAnswers, lang: str) -> Split:
    """Read every record; the whole message is refused when its source is not its topic's station (a station
    speaks only for itself) or its type is not what the topic carries, exactly as v1 refuses one message."""
    batch, address, out = answers.batch, parsed.address, Split()
    refusal = None
    if (batch.source.site, batch.source.line, batch.source.station) != (address.site, address.line, address.station):
        refusal = DomainError(ErrorCode.INVALID_REQUEST, {"topic": topic}, "source does not match topic")
    elif batch.type in _TOPIC_NAME and parsed.name != _TOPIC_NAME[batch.type]:
        refusal = DomainError(ErrorCode.INVALID_REQUEST, {"type": batch.type.value}, "unsupported message type")
    if refusal is not None:
        answer = error_answer(refusal, lang)
        out.refused = [(index, answer) for index in range(len(batch.records))]
        return out
    for index in range(len(batch.records)):
        try:
            envelope = batch.read_record(index)
        except ValidationError as error:
            reason = f"{topic}: records[{index}]: {'; '.join(describe_validation_error(error))}"
            out.malformed.append((index, Failure(ErrorCode.INVALID_REQUEST, "pydantic_core.ValidationError", reason)))
            continue
        answers.ids[index] = envelope.message_id
        out.readable.append((index, envelope))
    return out


async def store_records(db: Database, lang: str, retry: Retry[Answer], answers: BatchAnswers, work: Split) -> bool:
    """What the batcher does not do for a v2 message: quarantine its malformed records and store its print results
    or measurements, one transaction each, in order. True when this filled the message's last answer."""
    done = False
    for index, failure in work.malformed:
        letter = answers.letter(index)
        metrics.REFUSED.labels(failure.code.value).inc()
        answer = await retry(partial(quarantine, db, letter, failure, lang))
        metrics.HANDLED.labels(answers.batch.type.value, answer.outcome.value).inc()
        done = answers.fill(index, answer) or done
    if work.readable and work.readable[0][1].type in _TOPIC_NAME:
        station = parse_topic(answers.topic).address.prefix
        for index, envelope in work.readable:
            answer = await _store_one(db, lang, retry, answers, index, envelope, station)
            done = answers.fill(index, answer) or done
    return done


async def _store_one(
    db: Database, lang: str, retry: Retry[Answer], answers: BatchAnswers, index: int, envelope: Envelope, station: str
) -> Answer:
    async def attempt() -> Answer:
        if envelope.type is MessageType.MEASUREMENT:
            return await handle_measurement(db, envelope.payload, station, envelope.message_id, lang, faults.HOOKS)
        return await handle_print_result(db, envelope.payload, station, envelope.message_id, lang)

    started = time.perf_counter()
    answer = await retry(lambda: store_or_quarantine(db, attempt, lambda: answers.letter(index), lang))
    metrics.observe_handled(envelope.type.value, time.perf_counter() - started)
    faults.after_commit(envelope.type, envelope.message_id, answer.outcome)
    metrics.HANDLED.labels(envelope.type.value, answer.outcome.value).inc()
    return answer


def _station(topic: str) -> str | None:
    try:
        return parse_topic(topic).address.prefix
    except ValueError:
        return None
