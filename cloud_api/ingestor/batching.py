"""Completion messages collected into batches: one transaction for many records when a backlog drains."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, overload

import aiomqtt

from cloud_api.adapters.database import Database
from cloud_api.ingestor import faults, metrics
from cloud_api.ingestor.batch_messages import BatchAnswers
from cloud_api.ingestor.handler import Handled
from cloud_api.services.batch_completion import BatchItem, handle_completions_batch
from cloud_api.services.dead_letters import Letter
from cloud_api.services.handlers import Answer
from mes_contracts.envelope import Envelope

log = logging.getLogger(__name__)
MAX_BATCH = 200


@dataclass(frozen=True, slots=True)
class Pending:
    """One completion record waiting: a v1 message (`answers` None: answered alone) or record `index` of a v2
    message (answered in that message's one reply, when its last record is answered)."""

    message: aiomqtt.Message
    envelope: Envelope
    item: BatchItem
    letter: Letter | None  # the v1 message as received, should it end in dead_letters; v2: made on demand
    answers: BatchAnswers | None = None
    index: int = 0

    def dead_letter(self) -> Letter:
        if self.letter is not None:
            return self.letter
        assert self.answers is not None
        return self.answers.letter(self.index)


class _Letters(Sequence[Letter]):
    """The batch's dead-letter descriptions, each made only if the batch falls back to one by one and asks."""

    def __init__(self, batch: list[Pending]) -> None:
        self._batch = batch

    def __len__(self) -> int:
        return len(self._batch)

    @overload
    def __getitem__(self, index: int) -> Letter: ...
    @overload
    def __getitem__(self, index: slice) -> list[Letter]: ...
    def __getitem__(self, index: int | slice) -> Letter | list[Letter]:
        if isinstance(index, slice):
            return [pending.dead_letter() for pending in self._batch[index]]
        return self._batch[index].dead_letter()


Retry = Callable[[Callable[[], Awaitable[list[Answer]]]], Awaitable[list[Answer]]]
Reply = Callable[[aiomqtt.Message, Handled], Awaitable[None]]
ReplyBatch = Callable[[BatchAnswers], Awaitable[None]]


class CompletionBatcher:
    """One collector keeps arrival order (the latest verdict wins); it never waits to fill a batch.

    `run` is supervised (ingestor/supervision.py): if it fails, it is started again on the same queue. The batch
    in hand at that moment is not answered; its stations send it again (their outbox keeps it until answered).
    """

    def __init__(
        self,
        db: Database,
        lang: str,
        retry: Retry,
        reply: Reply,
        release: Callable[[], None],
        reply_batch: ReplyBatch | None = None,
    ):
        self._db = db
        self._lang = lang
        self._retry = retry
        self._reply = reply
        self._reply_batch = reply_batch
        self._release = release
        self._queue: asyncio.Queue[Pending] = asyncio.Queue()

    def put(self, pending: Pending) -> None:
        self._queue.put_nowait(pending)

    def discard(self) -> int:
        """Drop what still waits (the link is gone; the broker redelivers it to the persistent session, or the
        station sends it again) and give back its slots, which would otherwise leak at every reconnect."""
        dropped = 0
        while not self._queue.empty():
            self._queue.get_nowait()
            self._release()
            dropped += 1
        return dropped

    async def run(self, client: aiomqtt.Client) -> None:
        while True:
            batch = [await self._queue.get()]
            limit = _batch_limit()
            while len(batch) < limit and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._handle(client, batch)
            finally:
                for _ in batch:
                    self._release()

    async def _handle(self, client: aiomqtt.Client, batch: list[Pending]) -> None:
        if len(batch) == 1:
            only = batch[0]  # test-only: where an early (broken) ack would go
            faults.bind_message(client, only.message, None if only.answers is None else only.answers.batch.message_id)
        items = [pending.item for pending in batch]
        letters = _Letters(batch)
        with metrics.HANDLE_SECONDS.time(), metrics.BATCH_COMMIT.time():
            answers = await self._retry(
                lambda: handle_completions_batch(self._db, items, self._lang, letters, faults.HOOKS)
            )
        metrics.BATCH_SIZE.observe(len(batch))
        replies: list[Any] = []
        for pending, answer in zip(batch, answers, strict=True):
            faults.after_commit(pending.envelope.type, pending.envelope.message_id, answer.outcome)
            metrics.HANDLED.labels(pending.envelope.type.value, answer.outcome.value).inc()
            if pending.answers is None:
                replies.append(self._reply(pending.message, Handled(pending.envelope, answer)))
            elif pending.answers.fill(pending.index, answer) and self._reply_batch is not None:
                replies.append(self._reply_batch(pending.answers))
        await asyncio.gather(*replies)


def _batch_limit() -> int:
    plan = faults.active_plan()
    # The broken-ack control test binds one reply target per handling, so it runs one message at a time.
    return 1 if plan is not None and plan.mode == faults.ACK_BEFORE_COMMIT else MAX_BATCH
