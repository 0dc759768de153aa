"""Delivery of measurement batches from their outbox: publish on evt/measurement, store the answer, and once
every batch of a curve file is answered move the file (completed/, or error/ with the centre's refusal).

Several due batches travel in one v2 message (edge_gateway/batching.py, bounded by records and bytes); each
keeps its own id, replay flag, answer, retry and file accounting, exactly as when it travels alone."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_gateway.batching import Unbatchable, encode_batch, pack
from edge_gateway.dispositions import DuplicateReport, ErrorReport
from edge_gateway.health import Health
from edge_gateway.measurement_outbox import DueBatch, FileAnswers, MeasurementOutbox, MeasurementStore
from edge_gateway.mover import BatchMover, ContentChanged
from edge_gateway.ports import BatchesUnsupported, BatchLink, LinkError, ReplyTimeout
from edge_gateway.validation import reply_rejection
from mes_contracts.envelope import Envelope, Outcome, ReplyPayload
from mes_contracts.topics import Name, StationAddress

logger = logging.getLogger(__name__)
MAX_CENTRE_FAILURES = 5  # 5xx answers for one batch before it counts as refused
SENT = (Outcome.ACCEPTED.value, Outcome.DUPLICATE.value)


@dataclass(slots=True)
class MeasurementCounters:
    files_admitted: int = 0
    files_completed: int = 0
    files_errored: int = 0
    batches_sent: int = 0
    batches_refused: int = 0
    samples_admitted: int = 0
    gauge_samples: int = 0
    gauge_bad_lines: int = 0
    gauge_dropped: int = 0


class MeasurementSender:
    """At most `window` batches unanswered at once (each up to 20,000 samples)."""

    def __init__(
        self,
        address: StationAddress,
        pending_dir: Path,
        outbox: MeasurementOutbox,
        link: BatchLink,
        health: Health,
        mover: BatchMover,
        counters: MeasurementCounters,
        release: Callable[[str], None],
        reply_timeout_s: float,
        retry_interval_s: float,
        retry_max_s: float,
        window: int = 8,
        batch_max_records: int = 1,
    ) -> None:
        self._topic = address.event(Name.MEASUREMENT)
        self._pending_dir = pending_dir
        self._outbox = outbox
        self._link = link
        self._health = health
        self._mover = mover
        self._counters = counters
        self._release = release
        self._timeout = reply_timeout_s
        self._retry = retry_interval_s
        self._retry_max = max(retry_max_s, retry_interval_s)
        self._window = window
        self._batch_max = batch_max_records
        self._in_flight: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._was_down = False
        health.subscribe(self.wake)

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        try:
            for answered in await self._outbox.run(MeasurementStore.answered_files):
                await self._finish(answered)  # answers stored before a restart: move, never send again
            while True:
                self._wake.clear()
                timeout = await self._dispatch()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _dispatch(self) -> float | None:
        if not self._link.connected or self._health.server_online is False:
            self._was_down = True
            return None  # woken by the health change
        now = time.time()
        if self._was_down:
            self._was_down = False
            await self._outbox.run(lambda store: store.make_due(now))  # backoffs of the outage are moot
        free = self._window - len(self._in_flight)
        if free <= 0:
            return None
        in_flight = sorted(self._in_flight)
        batches, next_due = await self._outbox.run(lambda store: store.due(now, free, in_flight))
        for batch in batches:
            self._in_flight.add(batch.batch_id)
        for run in self._runs(batches):
            self._spawn(self._deliver(run[0]) if len(run) == 1 else self._deliver_many(run))
        if len(batches) < free and next_due is not None:
            return max(0.0, next_due - time.time())
        return None

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finish_later(self, done: FileAnswers) -> None:
        await asyncio.sleep(self._retry_max)
        await self._finish(done)

    def _runs(self, batches: list[DueBatch]) -> list[list[DueBatch]]:
        if len(batches) < 2 or self._batch_max < 2 or not self._link.speaks_v2:
            return [[batch] for batch in batches]
        runs = pack([len(b.envelope.encode()) for b in batches], self._batch_max)
        return [batches[run.start : run.stop] for run in runs]

    def _is_replay(self, batch: DueBatch) -> bool:
        return batch.attempts > 0 or batch.batch_id <= self._outbox.boot_last_id  # it may have gone out before

    async def _deliver_many(self, batches: list[DueBatch]) -> None:
        """One v2 message of measurement batches; each answer then goes its own way through `_answered`."""
        handed_over = False
        try:
            try:
                outgoing = encode_batch([b.envelope for b in batches], [self._is_replay(b) for b in batches])
                replies = await self._link.request_batch(self._topic, outgoing, self._timeout)
            except (BatchesUnsupported, Unbatchable) as error:  # none stored: each again at once, alone, as v1
                if isinstance(error, Unbatchable):
                    logger.warning("%d measurement batches go one by one: %s", len(batches), error)
                handed_over = True
                for batch in batches:
                    self._spawn(self._deliver(batch))
                return
            except LinkError as error:
                code = "NO_REPLY" if isinstance(error, ReplyTimeout) else "BROKER_DOWN"
                await self._each(batches, [None] * len(batches), code, error)
                return
            await self._each(batches, replies, "NO_REPLY", "the batch answer had no reply for it")
        except Exception:  # the batches stay in the outbox; the next round sends them again
            logger.exception("unexpected failure delivering %d measurement batches", len(batches))
        finally:
            if not handed_over:
                self._in_flight.difference_update(b.batch_id for b in batches)
            self.wake()

    async def _each(
        self, batches: list[DueBatch], replies: list[ReplyPayload | None], code: str, error: object
    ) -> None:
        """Each batch's answer (or, for None, its failure), one after the other (a message holds a few at most:
        measurement batches are large); one that cannot be applied stays in the outbox alone."""
        for batch, reply in zip(batches, replies, strict=True):
            try:
                if reply is None:
                    await self._failed(batch, code, error)
                else:
                    await self._answered(batch, reply)
            except Exception:
                logger.exception("measurement batch %s: its answer could not be applied", batch.message_id)

    async def _deliver(self, batch: DueBatch) -> None:
        try:
            envelope = Envelope.model_validate_json(batch.envelope)
            if self._is_replay(batch):
                envelope = envelope.model_copy(update={"replay": True})
            try:
                reply = await self._link.request(self._topic, envelope, self._timeout)
            except LinkError as error:
                await self._failed(batch, "NO_REPLY" if isinstance(error, ReplyTimeout) else "BROKER_DOWN", error)
                return
            await self._answered(batch, reply)
        except Exception:  # the batch stays in the outbox; the next round sends it again
            logger.exception("unexpected failure delivering measurement batch %s", batch.message_id)
        finally:
            self._in_flight.discard(batch.batch_id)
            self.wake()

    async def _failed(self, batch: DueBatch, code: str, error: object, server_failure: bool = False) -> None:
        delay = min(self._retry * 2 ** min(batch.attempts, 16), self._retry_max)
        at = time.time() + delay
        await self._outbox.run(lambda store: store.fail(batch.batch_id, at, server_failure))
        if code != "BROKER_DOWN":
            self._health.note_error(code, f"measurement batch {batch.message_id}: {error}")

    async def _answered(self, batch: DueBatch, reply: ReplyPayload) -> None:
        outcome = reply.outcome.value
        if outcome not in SENT and reply.http_status >= 500 and batch.server_failures + 1 < MAX_CENTRE_FAILURES:
            await self._failed(batch, "CENTRE_ERROR", f"http {reply.http_status}", server_failure=True)
            return
        self._counters.batches_sent += 1
        if outcome not in SENT:
            self._counters.batches_refused += 1
            logger.warning(
                "measurement batch %s refused: %s %s",
                batch.message_id,
                reply.body.get("error_code"),
                reply.body.get("message"),
            )
        done = await self._outbox.run(lambda store: store.answer(batch, outcome, reply.http_status, reply.body))
        if done is not None:
            await self._finish(done)

    async def _finish(self, done: FileAnswers) -> None:
        """Move the curve file by its answers (only if it still holds what was sent), then drop its rows."""
        report, duplicate = None, None
        if done.rejected is not None:
            message_id, status, body = done.rejected
            rejection = reply_rejection(body, status, message_id)
            report = ErrorReport(done.file_name, rejection.code, rejection.message, rejection.details)
        elif done.duplicates == done.batches:
            duplicate = DuplicateReport(done.file_name, "-", {"message": "every batch was stored before"})
        try:
            await self._mover.move(self._pending_dir / done.file_name, report, done.sha256, duplicate)
        except FileNotFoundError:
            logger.info("%s: answered; the file had already left pending/", done.file_name)
        except ContentChanged:
            logger.warning("%s was rewritten after it was sent; the new content is a new curve", done.file_name)
        except OSError as error:  # e.g. still open in the vendor app: the rows stay, the move is tried again
            logger.warning("cannot move %s yet (%s); trying again in %.0f s", done.file_name, error, self._retry_max)
            self._health.note_error("MOVE_FAILED", f"{done.file_name}: {error}")
            self._spawn(self._finish_later(done))
            return
        if report is None:
            self._counters.files_completed += 1
        else:
            self._counters.files_errored += 1
            logger.info("%s moved to error/: %s %s", done.file_name, report.code, report.message)
        await self._outbox.run(lambda store: store.forget_file(done.file_id))
        self._release(done.file_name)
