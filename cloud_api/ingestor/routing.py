"""The ingestor's message handling: each message routed once, handled in its own task, answered once.

Split from runner.py (which keeps the broker link, its reconnects and the background tasks): routing by topic and
envelope version, the bounded concurrency (a slot per message, a batch slot per completion record), refusals and
quarantine, the database retry loop and the replies.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiomqtt

from cloud_api.adapters.database import Database
from cloud_api.adapters.start_fast import FastStartConnections
from cloud_api.ingestor import faults, metrics
from cloud_api.ingestor.batch_messages import BatchAnswers, Split, read_batch, split, store_records
from cloud_api.ingestor.batching import MAX_BATCH, CompletionBatcher, Pending
from cloud_api.ingestor.handler import (
    UnreadableMessage,
    completion_item,
    handle_envelope,
    letter_of,
    read_envelope,
    surrogate_id,
)
from cloud_api.ingestor.replies import Replier
from cloud_api.ingestor.supervision import Health
from cloud_api.services import station_states
from cloud_api.services.dead_letters import Failure, Letter, is_transient, quarantine, store_or_quarantine
from cloud_api.services.handlers import Answer
from cloud_api.settings import CentralSettings
from mes_contracts.batch import BATCH_VERSION, MAX_BATCH_MESSAGE_BYTES, envelope_version
from mes_contracts.envelope import Envelope, MessageType, Source
from mes_contracts.errors import ErrorCode
from mes_contracts.topics import ParsedTopic

log = logging.getLogger(__name__)
T = TypeVar("T")
# A message may be this much larger than the REST body cap (MES_MAX_BODY_BYTES): the envelope around the record.
ENVELOPE_ALLOWANCE_BYTES = 64 * 1024
_V2_PREFIX = b'{"v":2,'
RESPONDER = Source(site="central", line="central", station="ingestor", gateway_id="ingestor")


class Router:
    """Routes and handles the messages of one broker link (runner.Ingestor adds the link itself)."""

    def __init__(
        self,
        settings: CentralSettings,
        db: Database,
        max_body_bytes: int,
        fast_starts: FastStartConnections | None = None,
    ):
        self.settings = settings
        self.db = db
        self._fast_starts = fast_starts  # the start on psycopg's prepared statements (services/start_fast.py)
        self._replier = Replier(RESPONDER)
        self._slots = asyncio.Semaphore(settings.ingestor_concurrency)
        # Completion records wait in the batch queue, one slot each (a v2 message takes one per record, so a
        # message of 200 lets in no more work than 200 v1 messages); bounded so a flood cannot grow memory.
        self._batch_slots = asyncio.Semaphore(2 * MAX_BATCH)
        self._tasks: set[asyncio.Task[None]] = set()
        self._health = Health()
        self._max_bytes = max_body_bytes + ENVELOPE_ALLOWANCE_BYTES
        # A v2 message may hold several records up to the REST cap each (mes_contracts/batch.py packs up to this).
        self._max_batch_bytes = max(self._max_bytes, MAX_BATCH_MESSAGE_BYTES + ENVELOPE_ALLOWANCE_BYTES)

    async def _consume(self, client: aiomqtt.Client, batcher: CompletionBatcher) -> None:
        async for message in client.messages:
            metrics.RECEIVED.inc()
            metrics.station_seen(message.topic.value, bool(message.retain))
            raw = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
            try:
                await self._route(client, batcher, message, raw)
            except Exception as error:  # one message must never stop the consumer
                log.exception("routing a message from %s failed", message.topic.value)
                metrics.TASK_FAILURES.labels("consume").inc()
                await self._spawn_refusal(client, message, Letter(message.topic.value, raw), Failure.of(error))

    async def _route(
        self, client: aiomqtt.Client, batcher: CompletionBatcher, message: aiomqtt.Message, raw: bytes
    ) -> None:
        topic = message.topic.value
        limit = self._max_batch_bytes if raw.startswith(_V2_PREFIX) else self._max_bytes
        if len(raw) > limit:
            metrics.REFUSED.labels(ErrorCode.PAYLOAD_TOO_LARGE.value).inc()
            failure = Failure(ErrorCode.PAYLOAD_TOO_LARGE, "PayloadTooLarge", f"{len(raw)} bytes; at most {limit}")
            await self._spawn_refusal(client, message, letter_of(topic, raw, None, None), failure)
            return
        if station_states.is_state_topic(topic):  # retained gateway health (issue 16): stored, never answered
            await self._slots.acquire()
            self._spawn(self._station_state(topic, raw))
            return
        version = envelope_version(raw)  # a prefix check for our own serialisers' messages
        if version == BATCH_VERSION:
            await self._route_batch(client, batcher, message, topic, raw)
            return
        if version is not None and version != 1:
            # A gateway newer than this centre (docs/ops/upgrade.md: upgrade the centre first).
            metrics.REFUSED.labels(ErrorCode.UNSUPPORTED_MESSAGE_VERSION.value).inc()
            reason = f"{topic}: v: {version} is not a version this centre reads (1, {BATCH_VERSION})"
            failure = Failure(ErrorCode.UNSUPPORTED_MESSAGE_VERSION, "UnsupportedMessageVersion", reason)
            await self._spawn_refusal(client, message, letter_of(topic, raw, None, None), failure)
            return
        try:
            parsed, envelope = read_envelope(topic, raw)  # once per message: routing and handling share it
        except UnreadableMessage as error:
            await self._unreadable(client, message, topic, raw, error)
            return
        metrics.RECORDS_PER_MESSAGE.observe(1)
        completion = completion_item(parsed, envelope)
        if completion is not None:
            await self._batch_slots.acquire()
            batcher.put(Pending(message, *completion, letter_of(topic, raw, parsed, envelope)))
            return
        await self._slots.acquire()
        self._spawn(self._process(client, message, parsed, envelope, raw))

    async def _unreadable(
        self, client: aiomqtt.Client, message: aiomqtt.Message, topic: str, raw: bytes, error: UnreadableMessage
    ) -> None:
        metrics.UNREADABLE.inc()
        metrics.REFUSED.labels(ErrorCode.INVALID_REQUEST.value).inc()
        log.error("unreadable message from %s: %s; first bytes %r", topic, error, raw[:200])
        letter = letter_of(topic, raw, error.parsed, None)
        await self._spawn_refusal(client, message, letter, Failure.of(error, ErrorCode.INVALID_REQUEST))

    async def _route_batch(
        self, client: aiomqtt.Client, batcher: CompletionBatcher, message: aiomqtt.Message, topic: str, raw: bytes
    ) -> None:
        """A v2 message: completions join the batcher one record (and one slot) at a time; refusals, malformed
        records, print results and measurements take one task (one slot) for the message."""
        try:
            parsed, batch = read_batch(topic, raw)
        except UnreadableMessage as error:
            await self._unreadable(client, message, topic, raw, error)  # one v1-style answer to the batch id
            return
        metrics.RECORDS_PER_MESSAGE.observe(len(batch.records))
        answers = BatchAnswers(message, topic, batch)
        work = split(topic, parsed, answers, self.settings.language)
        for index, answer in work.refused:
            metrics.HANDLED.labels(batch.type.value, answer.outcome.value).inc()
            answers.fill(index, answer)
        if work.refused:
            await self._replier.reply_batch(client, answers)
            return
        if work.needs_task:
            await self._slots.acquire()
            self._spawn(self._store_records(client, answers, work))
        if batch.type is MessageType.PROCESS_COMPLETED:
            for index, envelope in work.readable:
                completion = completion_item(parsed, envelope)
                assert completion is not None  # the source was checked for the whole message
                await self._batch_slots.acquire()
                batcher.put(Pending(message, *completion, None, answers, index))

    async def _store_records(self, client: aiomqtt.Client, answers: BatchAnswers, work: Split) -> None:
        try:
            # Test-only hooks: no-ops unless MES_FAULT_INJECT is set.
            faults.bind_message(client, answers.message, answers.batch.message_id)
            if await store_records(self.db, self.settings.language, self._with_db_retry, answers, work):
                await self._replier.reply_batch(client, answers)
        except Exception as error:  # never silent: the station sends it again, this log says why it failed
            log.exception("handling the records of %s %s failed", answers.batch.type.value, answers.batch.message_id)
            metrics.TASK_FAILURES.labels("message").inc()
            self._health.note("message", error)
        finally:
            self._slots.release()

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _spawn_refusal(
        self, client: aiomqtt.Client, message: aiomqtt.Message, letter: Letter, failure: Failure
    ) -> None:
        await self._slots.acquire()
        self._spawn(self._refuse(client, message, letter, failure))

    async def _refuse(self, client: aiomqtt.Client, message: aiomqtt.Message, letter: Letter, failure: Failure) -> None:
        """A message refused before handling: quarantined, and answered where the sender asked for an answer."""
        try:
            answer = await self._with_db_retry(lambda: quarantine(self.db, letter, failure, self.settings.language))
            metrics.HANDLED.labels(letter.message_type or "unknown", answer.outcome.value).inc()
            await self._reply(client, message, letter.message_id or surrogate_id(letter.payload), answer)
        except Exception:
            log.exception("refusing %s failed", letter.key)
            metrics.TASK_FAILURES.labels("refusal").inc()
        finally:
            self._slots.release()

    async def _station_state(self, topic: str, raw: bytes) -> None:
        try:
            await self._with_db_retry(lambda: station_states.record(self.db, topic, raw))
        except Exception:
            log.exception("storing the station state from %s failed", topic)
        finally:
            self._slots.release()

    async def _process(
        self, client: aiomqtt.Client, message: aiomqtt.Message, parsed: ParsedTopic, envelope: Envelope, raw: bytes
    ) -> None:
        try:
            await self._process_one(client, message, parsed, envelope, raw)
        except Exception as error:  # never silent: the station sends it again, this log says why it failed
            log.exception("handling %s %s failed", envelope.type.value, envelope.message_id)
            metrics.TASK_FAILURES.labels("message").inc()
            self._health.note("message", error)
        finally:
            self._slots.release()

    async def _process_one(
        self, client: aiomqtt.Client, message: aiomqtt.Message, parsed: ParsedTopic, envelope: Envelope, raw: bytes
    ) -> None:
        faults.bind_message(client, message)  # test-only hooks: no-ops unless MES_FAULT_INJECT is set

        def letter() -> Letter:  # made only for a message that fails (the topic is parsed again in there)
            return letter_of(message.topic.value, raw, parsed, envelope)

        async def attempt() -> Answer:
            handled = await handle_envelope(
                self.db, message.topic.value, parsed, envelope, self.settings.language, self._fast_starts
            )
            return handled.answer

        started = time.perf_counter()
        answer = await self._with_db_retry(
            lambda: store_or_quarantine(self.db, attempt, letter, self.settings.language)
        )
        metrics.observe_handled(envelope.type.value, time.perf_counter() - started)
        faults.after_commit(envelope.type, envelope.message_id, answer.outcome)
        metrics.HANDLED.labels(envelope.type.value, answer.outcome.value).inc()
        await self._reply(client, message, envelope.message_id, answer)

    async def _with_db_retry(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Keep the message and retry while the database is away: the record must not be lost. Anything else is
        raised (the use cases quarantine what they cannot store: services/dead_letters.py)."""
        delay = 0.5
        while True:
            try:
                return await attempt()
            except Exception as error:
                if not is_transient(error):
                    raise
                metrics.DB_RETRIES.inc()
                log.warning("database unavailable (%s); retrying in %.1f s", type(error).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _reply(
        self, client: aiomqtt.Client, message: aiomqtt.Message, in_reply_to: uuid.UUID, answer: Answer
    ) -> None:
        await self._replier.reply(client, message, in_reply_to, answer)
