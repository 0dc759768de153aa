"""Delivery from the outbox: windows of due records → request → answer stored → file moved → row deleted.

When several records are due they travel in v2 messages (edge_gateway/batching.py), but each record keeps its
own path: its own id, seq and replay flag, its own answer through `_answered`, its own retry and file move.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from edge_gateway.batching import Unbatchable, encode_batch, pack
from edge_gateway.counters import PickupCounters
from edge_gateway.finishing import SENT_OUTCOMES, STORE_ERRORS, Finisher
from edge_gateway.health import Health
from edge_gateway.mover import BatchMover
from edge_gateway.outbox import Outbox
from edge_gateway.outbox_store import Answered, Outbound
from edge_gateway.ports import BatchesUnsupported, BatchLink, LinkError, ReplyTimeout
from edge_gateway.settings import GatewaySettings
from edge_gateway.tasks import cancel_and_wait
from mes_contracts.envelope import Envelope, ReplyPayload
from mes_contracts.topics import Name

logger = logging.getLogger(__name__)

MAX_CENTRE_FAILURES = 5  # 5xx answers for one record before its file goes to error/ for a person to look at
REFILL_TICK_S = 0.02  # a nearly full window is topped up after this, not on every single answer


class Dispatcher:
    """At most `max_in_flight` records unanswered at once; only their envelopes are in memory."""

    def __init__(
        self,
        settings: GatewaySettings,
        link: BatchLink,
        outbox: Outbox,
        mover: BatchMover,
        counters: PickupCounters,
        health: Health,
        release: Callable[[str, bool], None],
    ) -> None:
        self._topic = settings.address.event(Name.PROCESS_COMPLETED)
        self._pending_dir = settings.pending_dir
        self._reply_timeout = settings.reply_timeout_s
        self._retry_interval = settings.retry_interval_s
        self._retry_max = max(settings.retry_max_s, settings.retry_interval_s)
        self._window = settings.max_in_flight
        self._batch_max = settings.batch_max_records
        self._refill_at = max(1, settings.max_in_flight // 4)  # free slots worth one outbox query
        retry = (self._retry_interval, self._retry_max)
        self._finisher = Finisher(
            self._pending_dir, outbox, mover, counters, health, release, retry, settings.max_in_flight
        )
        self._link = link
        self._outbox = outbox
        self._counters = counters
        self._health = health
        self._in_flight: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._paused_since: float | None = None
        self._resumed_at = 0.0
        self._resume_pending = False
        health.subscribe(self.wake)

    def wake(self) -> None:
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    # -- main loop ------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Until cancelled; unanswered records simply stay in the outbox for the next run."""
        try:
            await self._recover()
            await self._loop()
        finally:
            await cancel_and_wait(self._tasks)
            await self._finisher.close()

    async def _recover(self) -> None:
        """Answers stored by an earlier run whose file was not moved yet: apply them, never publish again."""
        try:
            answered = await self._outbox.answered()
        except STORE_ERRORS as error:  # keep the station's start relay alive; the next start tries again
            logger.error("cannot read the stored answers: %s", error)
            self._health.note_error("OUTBOX_ERROR", str(error))
            return
        if answered:
            logger.info("applying %d answer(s) stored before the restart", len(answered))
        for start in range(0, len(answered), self._window):
            chunk = answered[start : start + self._window]
            try:
                await self._finisher.finish(chunk)
            except Exception as error:  # the rows stay answered; the next start tries again
                logger.error("could not apply the stored answers of %d record(s): %s", len(chunk), error)

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            timeout: float | None = None
            if self._can_send():
                timeout = await self._dispatch()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):  # not wait_for: it can eat a cancel
                    await self._wake.wait()

    def _can_send(self) -> bool:
        """Broker connected and the server not known to be down; notes when an outage ends."""
        if not self._link.connected or self._health.server_online is False:
            if self._paused_since is None:
                self._paused_since = time.time()
            return False
        if self._paused_since is not None:
            self._paused_since = None
            self._resumed_at = time.time()
            self._resume_pending = True
        return True

    async def _dispatch(self) -> float | None:
        """Start sending what is due; the time to wait before looking again (None: until woken)."""
        try:
            if self._resume_pending:
                self._resume_pending = False
                await self._outbox.make_due(time.time())  # backoffs earned during the outage are moot now
            free = self._window - len(self._in_flight)
            if free <= 0:
                return None
            if self._in_flight and free < self._refill_at:
                return REFILL_TICK_S  # answers trickling in: one query per few freed slots, not one per answer
            batch, next_due = await self._outbox.due(time.time(), free, self._in_flight)
        except STORE_ERRORS as error:
            logger.error("cannot read the outbox: %s", error)
            self._health.note_error("OUTBOX_ERROR", str(error))
            return self._retry_interval
        for record in batch:
            self._in_flight.add(record.record_id)
        for run in self._runs(batch):
            if len(run) == 1:
                self._spawn(self._deliver(run[0]), run[0].record_id)
            else:
                self._spawn(self._deliver_many(run), run[0].record_id)
        if len(batch) < free and next_due is not None:
            return max(0.0, next_due - time.time())
        return None

    def _spawn(self, work: Coroutine[Any, Any, None], key: int | None = None) -> None:
        task = asyncio.get_running_loop().create_task(work, name=f"deliver-{key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _runs(self, batch: list[Outbound]) -> list[list[Outbound]]:
        """Records per message: one each for a lone record or a centre older than v2, else packed by count/bytes."""
        if len(batch) < 2 or self._batch_max < 2 or not self._link.speaks_v2:
            return [[record] for record in batch]
        sizes = [len(record.envelope.encode()) for record in batch]
        return [batch[run.start : run.stop] for run in pack(sizes, self._batch_max)]

    # -- many records, one message --------------------------------------------------------------------------

    async def _deliver_many(self, records: list[Outbound]) -> None:
        """One v2 message; then each record exactly as `_deliver` would treat its own outcome."""
        handed_over = False
        try:
            try:
                outgoing = encode_batch([r.envelope for r in records], [self._is_replay(r) for r in records])
                replies = await self._link.request_batch(self._topic, outgoing, self._reply_timeout)
            except (BatchesUnsupported, Unbatchable) as error:  # none stored: each again at once, alone, as v1
                if isinstance(error, Unbatchable):
                    logger.warning("%d records go one by one: %s", len(records), error)
                handed_over = True
                for record in records:
                    self._spawn(self._deliver(record), record.record_id)
                return
            except LinkError as error:
                code, reason = ("NO_REPLY" if isinstance(error, ReplyTimeout) else "BROKER_DOWN"), str(error)
                await self._each(records, lambda r: self._failed(r, code, reason))
                return
            await self._settle(records, list(replies))
        except Exception as error:
            logger.exception("unexpected failure delivering %d records; they stay in the outbox", len(records))
            internal = repr(error)
            await self._each(records, lambda r: self._failed(r, "INTERNAL", internal))
        finally:
            if not handed_over:
                self._in_flight.difference_update(r.record_id for r in records)
            self.wake()

    async def _each(self, records: list[Outbound], work: Callable[[Outbound], Coroutine[Any, Any, None]]) -> None:
        """`work` for every record at once: their outbox writes share one commit. A failure stays the record's."""
        results = await asyncio.gather(*(work(r) for r in records), return_exceptions=True)
        for record, result in zip(records, results, strict=True):
            if isinstance(result, STORE_ERRORS):
                logger.error("outbox trouble while delivering %s: %s", record.file_name, result)
                self._health.note_error("OUTBOX_ERROR", str(result))
            elif isinstance(result, BaseException):
                logger.error("unexpected failure delivering %s: %r; it stays in the outbox", record.file_name, result)

    # -- one record -----------------------------------------------------------------------------------------

    def _is_replay(self, record: Outbound) -> bool:
        """It may have gone out before (a failed attempt, or an earlier run) or it waited out an outage."""
        return (
            record.attempts > 0 or record.record_id <= self._outbox.boot_last_id or record.created_at < self._resumed_at
        )

    async def _deliver(self, record: Outbound) -> None:
        try:
            envelope = Envelope.model_validate_json(record.envelope)
            if self._is_replay(record):
                envelope = envelope.model_copy(update={"replay": True})
            try:
                reply = await self._link.request(self._topic, envelope, self._reply_timeout)
            except LinkError as error:
                code = "NO_REPLY" if isinstance(error, ReplyTimeout) else "BROKER_DOWN"
                await self._failed(record, code, str(error))
                return
            await self._answered(record, reply)
        except STORE_ERRORS as error:
            logger.error("outbox trouble while delivering %s: %s", record.file_name, error)
            self._health.note_error("OUTBOX_ERROR", str(error))
        except Exception as error:
            logger.exception("unexpected failure delivering %s; it stays in the outbox", record.file_name)
            with contextlib.suppress(*STORE_ERRORS):
                await self._failed(record, "INTERNAL", repr(error))
        finally:
            self._in_flight.discard(record.record_id)
            self.wake()

    async def _failed(self, record: Outbound, code: str, error: str, server_failure: bool = False) -> None:
        """Same record, same id, later: exponential backoff from MES_GW_RETRY_INTERVAL_S up to RETRY_MAX_S."""
        delay = min(self._retry_interval * 2 ** min(record.attempts, 16), self._retry_max)
        await self._outbox.fail(record.record_id, f"{code}: {error}", time.time() + delay, server_failure)
        self._counters.retried += 1
        if code != "BROKER_DOWN":  # the link already reported that one
            self._health.note_error(code, f"{record.file_name}: {error}")
        logger.debug("%s stays in the outbox (%s: %s); retry in %.1f s", record.file_name, code, error, delay)

    async def _answered(self, record: Outbound, reply: ReplyPayload) -> None:
        await self._settle([record], [reply])

    async def _settle(self, records: list[Outbound], replies: list[ReplyPayload | None]) -> None:
        """Each record by its own reply: asked again (none for it, or a 5xx), else its answer stored before the
        move. The answers of one message share one outbox wait and one finishing task (issue 18)."""
        now = time.time()
        retrying: dict[int, ReplyPayload | None] = {}
        storing: list[tuple[Outbound, ReplyPayload]] = []
        for record, reply in zip(records, replies, strict=True):
            if reply is None or self._centre_failed(record, reply):
                retrying[record.record_id] = reply
            else:
                storing.append((record, reply))
        if retrying:
            again = [r for r in records if r.record_id in retrying]
            await self._each(again, lambda r: self._retry(r, retrying[r.record_id]))
        if not storing:
            return
        # Stored before the move: a crash from here on applies these answers at restart without publishing again.
        try:
            await self._outbox.answer_many(
                [(r.record_id, a.outcome.value, a.http_status, a.body, now) for r, a in storing]
            )
        except STORE_ERRORS as error:  # not stored: they stay in the outbox and are asked again
            logger.error("outbox trouble storing the answers of %d record(s): %s", len(storing), error)
            self._health.note_error("OUTBOX_ERROR", str(error))
            return
        answered = [
            Answered(r.record_id, r.message_id, r.file_name, r.sha256, a.outcome.value, a.http_status, a.body)
            for r, a in storing
        ]
        await self._finisher.start(answered)

    def _centre_failed(self, record: Outbound, reply: ReplyPayload) -> bool:
        """The centre failed, not the file. It never stores a 5xx under the id, so the same id is asked again."""
        failures = record.server_failures + 1
        if reply.outcome.value in SENT_OUTCOMES or reply.http_status < 500 or failures >= MAX_CENTRE_FAILURES:
            return False
        logger.warning(
            "%s: centre answered %s %s (%d/%d); will retry",
            record.file_name,
            reply.http_status,
            reply.body.get("error_code"),
            failures,
            MAX_CENTRE_FAILURES,
        )
        return True

    async def _retry(self, record: Outbound, reply: ReplyPayload | None) -> None:
        if reply is None:  # the answer had nothing for this record: like no reply, it is asked again later
            await self._failed(record, "NO_REPLY", "the batch answer had no reply for this record")
        else:
            await self._failed(record, "CENTRE_ERROR", f"http {reply.http_status}", server_failure=True)
