"""Starts that arrive while a call is in flight go to the database together, in the next call (issue 18.3).

Every start holds the audit chain's lock (migration 0004) from its audit insert until its commit has been flushed
to disk, so one start per transaction tops out at one WAL flush per start (~420 starts/s on the development VM,
~1,180/s with the flush not awaited: bench/README.md). A call of mes_start_processes writes many starts with one
commit. Nothing waits to fill a batch: a start goes at once when fewer than IN_FLIGHT calls are running (at a
low rate, every start is a call of its own, as before); otherwise it joins the next call, of at most MAX_BATCH.

A call that fails as a whole (a racing run or answer, a deadlock, a database gone away) is sent again start by
start, so only the start that still fails gets the error, and with it the locked path.
"""

from __future__ import annotations

import asyncio
import json
from weakref import WeakKeyDictionary

from cloud_api.adapters import start_fast
from cloud_api.adapters.start_fast import FastStartConnections, StartCall, StartResult

IN_FLIGHT = 2  # two calls: the next one locks and checks its LOTs while the previous one commits
MAX_BATCH = 50

_Item = tuple[StartCall, "asyncio.Future[StartResult]"]


class StartQueue:
    """The starts of one ingestor (one FastStartConnections), sent IN_FLIGHT calls at a time."""

    def __init__(self, conns: FastStartConnections, in_flight: int = IN_FLIGHT, max_batch: int = MAX_BATCH):
        self._conns = conns
        self._in_flight = in_flight
        self._max_batch = max_batch
        self._pending: list[_Item] = []
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()  # referenced until done (the loop keeps weak references)

    async def submit(self, call: StartCall) -> StartResult:
        """The function's answer for this start; raises what made its call fail (psycopg.Error, mostly)."""
        future: asyncio.Future[StartResult] = asyncio.get_running_loop().create_future()
        self._pending.append((call, future))
        if self._running < self._in_flight:
            # A free slot: this task sends the call itself (no task to create at a low rate), then leaves any
            # starts that queued meanwhile to a drain task.
            self._running += 1
            try:
                await self._send(self._take())
            finally:
                self._running -= 1
                self._drain_later()
        return await future

    def _take(self) -> list[_Item]:
        batch = self._pending[: self._max_batch]
        del self._pending[: self._max_batch]
        return batch

    def _drain_later(self) -> None:
        if self._pending and self._running < self._in_flight:
            self._running += 1
            task = asyncio.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _drain(self) -> None:
        try:
            while self._pending:
                await self._send(self._take())
        finally:
            self._running -= 1

    async def _send(self, batch: list[_Item]) -> None:
        try:
            results = await self._call([call for call, _ in batch])
        except Exception as error:
            if len(batch) > 1:
                for item in batch:  # one by one: only the start that still fails falls back
                    await self._send([item])
                return
            _settle(batch[0][1], error)
            return
        except BaseException:  # cancelled: the call's other starts go to the locked path (their answer, stored or
            # not, is found there); the cancellation itself stays with the task that was cancelled
            for _, future in batch:
                _settle(future, InterruptedError("the call carrying this start was cancelled"))
            raise
        by_n = {result.n: result for result in results}
        for n, (_, future) in enumerate(batch):
            found = by_n.get(n)
            _settle(future, found if found is not None else LookupError(f"no result for start {n} of the call"))

    async def _call(self, calls: list[StartCall]) -> list[StartResult]:
        for n, call in enumerate(calls):
            call["n"] = n
        async with self._conns.connection() as conn:
            return await start_fast.start_processes(conn, json.dumps(calls, ensure_ascii=False))


def _settle(future: asyncio.Future[StartResult], outcome: StartResult | BaseException) -> None:
    if future.done():  # its submitter was cancelled
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


_QUEUES: WeakKeyDictionary[FastStartConnections, StartQueue] = WeakKeyDictionary()


def queue_of(conns: FastStartConnections) -> StartQueue:
    """The queue of these connections (one per ingestor), made when first needed."""
    queue = _QUEUES.get(conns)
    if queue is None:
        queue = _QUEUES[conns] = StartQueue(conns)
    return queue
