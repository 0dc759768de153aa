"""After the answer is stored: each file moved by its answer, then its outbox row dropped (issue 18: one task,
one mover job and one deletion op per answered message, not one of each per record).

A record's outcome stays its own: a file that cannot be moved yet is retried alone with a growing delay, a file
rewritten since it was sent is left in place and looked at again as a new one, a file already gone is logged.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from edge_gateway.counters import PickupCounters
from edge_gateway.dispositions import DuplicateReport, ErrorReport
from edge_gateway.health import Health
from edge_gateway.mover import BatchMover, ContentChanged, MoveOrder, MoveResult
from edge_gateway.outbox import Outbox, OutboxClosed
from edge_gateway.outbox_store import Answered
from edge_gateway.tasks import cancel_and_wait
from edge_gateway.validation import reply_rejection
from mes_contracts.envelope import Outcome

logger = logging.getLogger(__name__)

SENT_OUTCOMES = (Outcome.ACCEPTED.value, Outcome.DUPLICATE.value)
STORE_ERRORS = (sqlite3.Error, OutboxClosed)
FINISHING_PER_SLOT = 4


class Finisher:
    """Applies stored answers; at most `FINISHING_PER_SLOT * max_in_flight` records wait for the mover at once."""

    def __init__(
        self,
        pending_dir: Path,
        outbox: Outbox,
        mover: BatchMover,
        counters: PickupCounters,
        health: Health,
        release: Callable[[str, bool], None],
        retry: tuple[float, float],
        max_in_flight: int,
    ) -> None:
        self._pending_dir = pending_dir
        self._outbox = outbox
        self._mover = mover
        self._counters = counters
        self._health = health
        self._release = release
        self._retry_interval, self._retry_max = retry
        # Answered records being moved no longer hold a send slot, but only so many may wait for the mover.
        self._finishing = asyncio.Semaphore(FINISHING_PER_SLOT * max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        await cancel_and_wait(self._tasks)

    async def start(self, answered: list[Answered]) -> None:
        """Hand over answered records (the answer already stored); waits only while the mover is behind."""
        for _ in answered:
            await self._finishing.acquire()  # backpressure: the send slot is held only while the mover is behind
        self._spawn(self._finish_released(answered), answered[0].record_id if answered else None)

    async def finish(self, answered: Sequence[Answered], attempt: int = 0) -> None:
        """Move each file by its answer (only if it still has the content that was sent), then drop the rows."""
        orders: list[MoveOrder] = []
        for item in answered:
            report = None
            if item.outcome not in SENT_OUTCOMES:
                rejection = reply_rejection(item.body, item.http_status, item.message_id)
                report = ErrorReport(item.file_name, rejection.code, rejection.message, rejection.details)
            duplicate = None
            if item.outcome == Outcome.DUPLICATE.value:  # the same bytes were stored before: say so beside it
                duplicate = DuplicateReport(item.file_name, str(item.message_id), item.body)
            orders.append(MoveOrder(self._pending_dir / item.file_name, report, item.sha256, duplicate))
        results = await self._mover.move_many(orders)
        done: list[int] = []
        for item, order, result in zip(answered, orders, results, strict=True):
            try:
                if self._moved(item, order, result, attempt):
                    done.append(item.record_id)
            except Exception:  # this record's trouble alone: its row stays answered, the next start applies it
                logger.exception("unexpected failure after moving %s", item.file_name)
        if done:
            self._outbox.delete_soon(done)  # rides with the next commit; see Outbox.delete_soon

    def _moved(self, item: Answered, order: MoveOrder, result: MoveResult, attempt: int) -> bool:
        """Book one file's move; True when its row may go (False: it is tried again later)."""
        name = item.file_name
        look_again = False
        if isinstance(result, FileNotFoundError):  # removed by someone, or moved just before a crash
            logger.info("%s: answered %s; the file had already left pending/", name, item.outcome)
        elif isinstance(result, ContentChanged):
            logger.warning("%s was rewritten after it was sent; the new content is picked up as a new file", name)
            look_again = True
        elif isinstance(result, OSError):  # e.g. still open in the vendor app (Windows sharing violation)
            delay = min(self._retry_interval * 2 ** min(attempt, 16), self._retry_max)
            logger.warning("cannot move %s yet (%s); trying again in %.1f s", name, result, delay)
            self._health.note_error("MOVE_FAILED", f"{name}: {result}")
            self._spawn(self._finish_later(item, attempt + 1, delay))
            return False
        if order.report is None:
            self._counters.completed += 1
            logger.debug("%s %s (%s)", name, item.outcome, item.message_id)
            if order.duplicate is not None:
                self._counters.duplicates += 1
                logger.info(
                    "%s: the centre already had this exact content; moved to completed/ with a .duplicate.log (%s)",
                    name,
                    item.message_id,
                )
        else:
            self._counters.errored += 1
            logger.info("%s moved to error/: %s %s", name, order.report.code, order.report.message)
        self._release(name, look_again)
        return True

    async def _finish_released(self, answered: list[Answered]) -> None:
        try:
            await self.finish(answered)
        except STORE_ERRORS as error:
            logger.error("outbox trouble after answering %d record(s): %s", len(answered), error)
        except Exception:  # the rows stay answered: the next start applies them
            logger.exception("unexpected failure moving %d answered file(s)", len(answered))
        finally:
            for _ in answered:
                self._finishing.release()

    async def _finish_later(self, answered: Answered, attempt: int, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await self.finish([answered], attempt)
        except STORE_ERRORS as error:
            logger.error("outbox trouble after moving %s: %s", answered.file_name, error)
        except Exception:
            logger.exception("unexpected failure moving %s", answered.file_name)

    def _spawn(self, work: Coroutine[Any, Any, None], key: int | None = None) -> None:
        task = asyncio.get_running_loop().create_task(work, name=f"finish-{key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
