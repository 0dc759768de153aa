"""Delivery from the outbox: windows of due records → request → answer stored → file moved → row deleted.

When several records are due they travel in v2 messages (edge_gateway/batching.py), but each record keeps its
own path: its own id, seq and replay flag, its own answer through `_answered`, its own retry and file move.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Coroutine
from typing import Any

from edge_gateway.batching import Unbatchable, encode_batch, pack
from edge_gateway.counters import PickupCounters
from edge_gateway.dispositions import DuplicateReport, ErrorReport
from edge_gateway.health import Health
from edge_gateway.mover import BatchMover, ContentChanged
from edge_gateway.outbox import Outbox, OutboxClosed
from edge_gateway.outbox_store import Answered, Outbound
from edge_gateway.ports import BatchesUnsupported, BatchLink, LinkError, ReplyTimeout
from edge_gateway.settings import GatewaySettings
from edge_gateway.tasks import cancel_and_wait
from edge_gateway.validation import reply_rejection
from mes_contracts.envelope import Envelope, Outcome, ReplyPayload
from mes_contracts.topics import Name

logger = logging.getLogger(__name__)

SENT_OUTCOMES = (Outcome.ACCEPTED.value, Outcome.DUPLICATE.value)
MAX_CENTRE_FAILURES = 5  # 5xx answers for one record before its file goes to error/ for a person to look at
STORE_ERRORS = (sqlite3.Error, OutboxClosed)
REFILL_TICK_S = 0.02  # a nearly full window is topped up after this, not on every single answer
FINISHING_PER_SLOT = 4


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
        # Answered records being moved no longer hold a send slot, but only so many may wait for the mover.
        self._finishing = asyncio.Semaphore(FINISHING_PER_SLOT * settings.max_in_flight)
        self._link = link
        self._outbox = outbox
        self._mover = mover
        self._counters = counters
        self._health = health
        self._release = release
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
            results = await asyncio.gather(*(self._finish(a) for a in chunk), return_exceptions=True)
            for item, result in zip(chunk, results, strict=True):
                if isinstance(result, Exception):  # the row stays answered; the next start tries again
                    logger.error("could not apply the stored answer of %s: %s", item.file_name, result)

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
            outcomes = dict(zip((r.record_id for r in records), replies, strict=True))
            await self._each(records, lambda r: self._answer_or_retry(r, outcomes[r.record_id]))
        except Exception as error:
            logger.exception("unexpected failure delivering %d records; they stay in the outbox", len(records))
            internal = repr(error)
            await self._each(records, lambda r: self._failed(r, "INTERNAL", internal))
        finally:
            if not handed_over:
                self._in_flight.difference_update(r.record_id for r in records)
            self.wake()

    async def _answer_or_retry(self, record: Outbound, reply: ReplyPayload | None) -> None:
        if reply is None:  # the answer had nothing for this record: like no reply, it is asked again later
            await self._failed(record, "NO_REPLY", "the batch answer had no reply for this record")
        else:
            await self._answered(record, reply)

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
        failures = record.server_failures + 1
        if reply.outcome.value not in SENT_OUTCOMES and reply.http_status >= 500 and failures < MAX_CENTRE_FAILURES:
            # The centre failed, not the file. It never stores a 5xx under the id, so the same id is asked again.
            logger.warning(
                "%s: centre answered %s %s (%d/%d); will retry",
                record.file_name,
                reply.http_status,
                reply.body.get("error_code"),
                failures,
                MAX_CENTRE_FAILURES,
            )
            await self._failed(record, "CENTRE_ERROR", f"http {reply.http_status}", server_failure=True)
            return
        # Stored before the move: a crash from here on applies this answer at restart without publishing again.
        await self._outbox.answer(record.record_id, reply.outcome.value, reply.http_status, reply.body, time.time())
        answered = Answered(
            record.record_id,
            record.message_id,
            record.file_name,
            record.sha256,
            reply.outcome.value,
            reply.http_status,
            reply.body,
        )
        await self._finishing.acquire()  # backpressure: the send slot is held only while the mover is behind
        self._spawn(self._finish_released(answered), record.record_id)

    async def _finish_released(self, answered: Answered) -> None:
        try:
            await self._finish(answered)
        except STORE_ERRORS as error:
            logger.error("outbox trouble after answering %s: %s", answered.file_name, error)
        except Exception:  # the row stays answered: the next start applies it
            logger.exception("unexpected failure moving %s", answered.file_name)
        finally:
            self._finishing.release()

    async def _finish(self, answered: Answered, attempt: int = 0) -> None:
        """Move the file by the answer (only if it still has the content that was sent), then drop the row."""
        name = answered.file_name
        report = None
        if answered.outcome not in SENT_OUTCOMES:
            rejection = reply_rejection(answered.body, answered.http_status, answered.message_id)
            report = ErrorReport(name, rejection.code, rejection.message, rejection.details)
        duplicate = None
        if answered.outcome == Outcome.DUPLICATE.value:  # the same bytes were stored before: say so beside it
            duplicate = DuplicateReport(name, str(answered.message_id), answered.body)
        look_again = False
        try:
            await self._mover.move(self._pending_dir / name, report, answered.sha256, duplicate)
        except FileNotFoundError:  # removed by someone, or moved just before a crash that kept the row
            logger.info("%s: answered %s; the file had already left pending/", name, answered.outcome)
        except ContentChanged:
            logger.warning("%s was rewritten after it was sent; the new content is picked up as a new file", name)
            look_again = True
        except OSError as error:  # e.g. still open in the vendor app (Windows sharing violation)
            delay = min(self._retry_interval * 2 ** min(attempt, 16), self._retry_max)
            logger.warning("cannot move %s yet (%s); trying again in %.1f s", name, error, delay)
            self._health.note_error("MOVE_FAILED", f"{name}: {error}")
            self._spawn(self._finish_later(answered, attempt + 1, delay))
            return
        if report is None:
            self._counters.completed += 1
            logger.debug("%s %s (%s)", name, answered.outcome, answered.message_id)
            if duplicate is not None:
                self._counters.duplicates += 1
                logger.info(
                    "%s: the centre already had this exact content; moved to completed/ with a .duplicate.log (%s)",
                    name,
                    answered.message_id,
                )
        else:
            self._counters.errored += 1
            logger.info("%s moved to error/: %s %s", name, report.code, report.message)
        self._outbox.delete_soon([answered.record_id])  # rides with the next commit; see Outbox.delete_soon
        self._release(name, look_again)

    async def _finish_later(self, answered: Answered, attempt: int, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await self._finish(answered, attempt)
        except STORE_ERRORS as error:
            logger.error("outbox trouble after moving %s: %s", answered.file_name, error)
