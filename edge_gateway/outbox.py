"""Durable outbox: a valid completion is committed here before it is published and stays until answered."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from edge_gateway.outbox_store import (
    Admission,
    AdmitStatus,
    Answered,
    NewRecord,
    Outbound,
    OutboxStore,
    Totals,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
Op = Callable[[OutboxStore], Any]
SEQ_BLOCK = 100_000
ROOM_AGAIN_RATIO = 0.9  # hysteresis: after a full alarm, take new files again only below 90 % of the bound
CLOSE_GRACE_S = 5.0
DEFERRED_WRITE_S = 0.05  # a deferred write rides with the next commit, or commits alone after this


class OutboxClosed(RuntimeError):
    """The outbox is not open (not yet, or any more)."""


@dataclass(slots=True)
class _Group:
    """Same-kind writes of one commit window: one op, one statement batch and one future for all of them."""

    rows: list[Any] = field(default_factory=list)
    future: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Outbox:
    """Async face of the outbox file; `depth`, `bytes` and `full` are mirrored after every committed batch.

    Every SQLite call runs on one dedicated thread (a single-worker executor) that holds the one connection:
    a sqlite3 connection must not be shared between threads, SQLite has a single writer anyway (a second
    connection would only meet SQLITE_BUSY), and the fsync of `synchronous=FULL` must not stall the event loop.
    Writes are group-committed: the writes submitted during one loop turn, or while the previous batch was
    on disk, share one transaction, so one fsync covers a whole window of files instead of one each.
    """

    def __init__(self, path: Path, max_records: int, max_bytes: int) -> None:
        self.path = path
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.depth = 0
        self.bytes = 0
        self.full = False
        self.boot_last_id = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-db")
        self._store: OutboxStore | None = None
        self._ops: list[tuple[Op, asyncio.Future[Any]]] = []
        self._groups: dict[str, _Group] = {}  # open groups of the window being gathered (answers, deletions)
        self._flusher: asyncio.Task[None] | None = None
        self._deferred: asyncio.TimerHandle | None = None
        self._listeners: list[Callable[[], None]] = []
        self._seq_next = 0
        self._seq_limit = 0
        self._reserving: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def open(self) -> None:
        store = await self._call(OutboxStore, self.path, self.max_records, self.max_bytes)
        self._store = store
        self.depth, self.bytes, self.boot_last_id = store.depth, store.bytes, store.boot_last_id
        self._seq_next, self._seq_limit = await self._write(functools.partial(OutboxStore.reserve_seq, block=SEQ_BLOCK))
        logger.info("outbox %s open: %d record(s), %d bytes", self.path, self.depth, self.bytes)

    async def close(self) -> None:
        """Let the batch on its way finish, then close the connection on its own thread."""
        if self._ops:
            self._kick()  # deferred deletions still go to disk
        pending = [t for t in (self._flusher, self._reserving) if t is not None and not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=CLOSE_GRACE_S)
        store, self._store = self._store, None
        if store is not None:
            await self._call(store.close)
        self._executor.shutdown(wait=False)

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Called (in the loop) after every committed batch: depth, bytes or `full` may have changed."""
        self._listeners.append(listener)

    # -- writes (group-committed) ---------------------------------------------------------------------------

    async def admit(self, new: NewRecord) -> Admission:
        """Commit a new record, or find the one with the same name and content; FULL when over the bound."""
        result: Admission = await self._write(functools.partial(OutboxStore.admit, new=new))
        return result

    async def admit_many(self, news: Sequence[NewRecord]) -> list[Admission]:
        """`admit` for every record of one pickup pass: one op and one callback, committed with its window."""
        if not news:
            return []
        result: list[Admission] = await self._write(functools.partial(OutboxStore.admit_many, news=list(news)))
        return result

    async def fail(self, record_id: int, error: str, next_attempt_at: float, server_failure: bool = False) -> None:
        await self._write(
            functools.partial(
                OutboxStore.fail,
                record_id=record_id,
                error=error,
                next_attempt_at=next_attempt_at,
                server_failure=server_failure,
            )
        )

    async def answer(self, record_id: int, outcome: str, http_status: int, body: dict[str, Any], at: float) -> None:
        """Stored when this returns. Answers arriving in one window share one executemany and one future."""
        await self.answer_many([(record_id, outcome, http_status, body, at)])

    async def answer_many(self, answers: Sequence[tuple[int, str, int, dict[str, Any], float]]) -> None:
        """`answer` for every (record_id, outcome, http_status, body, at) of one message: one wait for all."""
        self._opened()
        if not answers:
            return
        group = self._join("answer", _answer_rows)
        group.rows.extend((outcome, status, body, at, record_id) for record_id, outcome, status, body, at in answers)
        self._kick()
        await asyncio.shield(group.future)  # shared: one waiter's cancellation must not cancel the others'

    async def delete(self, record_ids: Iterable[int]) -> None:
        await self._write(functools.partial(OutboxStore.delete, record_ids=list(record_ids)))

    def delete_soon(self, record_ids: Iterable[int]) -> None:
        """Delete without waiting: the row rides with the next commit (during a drain, the next answer's).

        Safe because writes run in submission order: the deletions of one window share one op, queued where the
        first of them was, so an admission queued after any of them sees the row gone. A row left behind by a
        crash is answered and its file gone; the next start closes it without publishing.
        """
        opening = "delete" not in self._groups
        group = self._join("delete", _delete_rows)
        if opening:
            group.future.add_done_callback(_log_failure)
        group.rows.extend(record_ids)
        if self._deferred is None:
            self._deferred = asyncio.get_running_loop().call_later(DEFERRED_WRITE_S, self._kick)

    async def make_due(self, now: float) -> int:
        result: int = await self._write(functools.partial(OutboxStore.make_due, now=now))
        return result

    # -- reads ----------------------------------------------------------------------------------------------

    async def due(self, now: float, limit: int, in_flight: Iterable[int]) -> tuple[list[Outbound], float | None]:
        return await self._call(self._opened().due, now, limit, list(in_flight))

    async def answered(self) -> list[Answered]:
        return await self._call(self._opened().answered)

    async def names(self) -> list[str]:
        return await self._call(self._opened().names)

    async def totals(self) -> Totals:
        return await self._call(self._opened().totals)

    # -- envelope sequence ----------------------------------------------------------------------------------

    def next_seq(self) -> int:
        """Per-gateway envelope order, increasing across restarts (blocks are reserved in the file ahead)."""
        value = self._seq_next
        self._seq_next += 1
        if self._store is not None and self._reserving is None and self._seq_limit - self._seq_next < SEQ_BLOCK // 2:
            self._reserving = asyncio.get_running_loop().create_task(self._reserve_more(), name="outbox-seq")
        if value >= self._seq_limit:
            logger.warning("envelope seq %d is past the reserved block; reservation still on its way", value)
        return value

    async def _reserve_more(self) -> None:
        try:
            _, self._seq_limit = await self._write(functools.partial(OutboxStore.reserve_seq, block=SEQ_BLOCK))
        except Exception:
            logger.exception("could not reserve envelope seq numbers")
        finally:
            self._reserving = None

    # -- machinery ------------------------------------------------------------------------------------------

    def _opened(self) -> OutboxStore:
        if self._store is None:
            raise OutboxClosed(f"outbox {self.path} is not open")
        return self._store

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _write(self, op: Op) -> Any:
        self._opened()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._ops.append((op, future))
        self._kick()
        return await future

    def _join(self, kind: str, op_of: Callable[[list[Any]], Op]) -> _Group:
        """The open group of `kind`, queued as one op when it opens; rows added until its window is taken."""
        group = self._groups.get(kind)
        if group is None:
            group = self._groups[kind] = _Group()
            self._ops.append((op_of(group.rows), group.future))
        return group

    def _kick(self) -> None:
        """Make sure a flusher runs; it takes every queued write, deferred ones included."""
        if self._deferred is not None:
            self._deferred.cancel()
            self._deferred = None
        if self._ops and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.get_running_loop().create_task(self._flush(), name="outbox-commit")

    async def _flush(self) -> None:
        while self._ops:
            await asyncio.sleep(0)  # the other writers of this loop turn join the batch
            batch, self._ops = self._ops, []
            self._groups = {}  # later answers and deletions open new groups for the next window
            if self._deferred is not None:
                self._deferred.cancel()
                self._deferred = None
            try:
                results, depth, size = await self._call(self._commit, [op for op, _ in batch])
            except Exception as error:
                logger.error("outbox commit of %d write(s) failed: %s", len(batch), error)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            except asyncio.CancelledError:
                for _, future in (*batch, *self._ops):
                    future.cancel()
                raise
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
            refused = any(_refused(r) for r in results)
            self._mirror(depth, size, refused)

    def _commit(self, ops: list[Op]) -> tuple[list[Any], int, int]:
        store = self._opened()
        results = store.transaction(ops)
        return results, store.depth, store.bytes

    def _mirror(self, depth: int, size: int, refused: bool) -> None:
        self.depth, self.bytes = depth, size
        if refused and not self.full:
            self.full = True
            logger.error(
                "OUTBOX FULL: %d record(s), %d bytes (bounds %d records, %d bytes); new files stay in "
                "pending/ until the centre takes the backlog",
                depth,
                size,
                self.max_records,
                self.max_bytes,
            )
        elif self.full and depth <= self.max_records * ROOM_AGAIN_RATIO and size <= self.max_bytes * ROOM_AGAIN_RATIO:
            self.full = False
            logger.warning("outbox has room again (%d record(s)); taking new files", depth)
        for listener in self._listeners:
            try:
                listener()
            except Exception:
                logger.exception("outbox listener failed")


def _refused(result: Any) -> bool:
    """An admission (or one of a pass's admissions) refused for lack of room."""
    if isinstance(result, list):
        return any(_refused(r) for r in result)
    return isinstance(result, Admission) and result.status is AdmitStatus.FULL


def _answer_rows(rows: list[Any]) -> Op:
    """The body is serialised on the outbox thread, when the op runs, not in the event loop."""

    def op(store: OutboxStore) -> None:
        store.answer_many([(o, s, json.dumps(b, ensure_ascii=False), at, i) for o, s, b, at, i in rows])

    return op


def _delete_rows(rows: list[Any]) -> Op:
    return functools.partial(OutboxStore.delete, record_ids=rows)


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.error("deferred outbox write failed (the row is closed at the next start): %s", future.exception())
