"""services/start_queue.py on its own (the database call replaced: a pure unit test of the queue's bookkeeping):
starts that queue while a call is in flight go together; a cancelled call answers its other starts with an error
the start path turns into the locked path, and leaves the queue working."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cloud_api.adapters.start_fast import StartCall, StartResult
from cloud_api.services.start_queue import StartQueue


class HeldQueue(StartQueue):
    """A queue whose calls each wait for one `gate.release()` and answer every start 'accepted' with its lot."""

    def __init__(self, in_flight: int = 1) -> None:
        super().__init__(conns=None, in_flight=in_flight)  # type: ignore[arg-type]  # _call is replaced
        self.gate = asyncio.Semaphore(0)
        self.calls: list[list[str]] = []
        self.entered: asyncio.Queue[list[str]] = asyncio.Queue()

    async def _call(self, calls: list[StartCall]) -> list[StartResult]:
        lots = [call["lot_number"] for call in calls]
        self.calls.append(lots)
        self.entered.put_nowait(lots)
        await self.gate.acquire()
        return [StartResult(n, "accepted", 200, call["lot_number"], None, None) for n, call in enumerate(calls)]


def _call(lot: str) -> StartCall:
    return {"n": 0, "lot_number": lot}  # type: ignore[typeddict-item]  # the rest is the database's business


async def _submitted(queue: HeldQueue, lot: str) -> asyncio.Task[StartResult]:
    task = asyncio.create_task(queue.submit(_call(lot)))
    await asyncio.sleep(0)  # let it reach the queue
    return task


async def test_starts_queued_behind_a_call_go_together_in_order() -> None:
    queue = HeldQueue()
    first = await _submitted(queue, "A")
    assert await queue.entered.get() == ["A"]
    rest = [await _submitted(queue, lot) for lot in ("B", "C", "D")]
    queue.gate.release()
    assert await queue.entered.get() == ["B", "C", "D"]
    queue.gate.release()
    results = await asyncio.gather(first, *rest)
    assert [r.work_order_id for r in results] == ["A", "B", "C", "D"]


async def test_a_cancelled_leader_leaves_the_queued_starts_answered() -> None:
    queue = HeldQueue()
    leader = await _submitted(queue, "A")
    await queue.entered.get()
    waiting = [await _submitted(queue, lot) for lot in ("B", "C")]
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert await queue.entered.get() == ["B", "C"]
    queue.gate.release()
    assert [(await task).work_order_id for task in waiting] == ["B", "C"]


async def test_a_cancelled_call_answers_its_other_starts_with_interrupted_error() -> None:
    queue = HeldQueue()
    leader = await _submitted(queue, "A")
    await queue.entered.get()
    waiting = [await _submitted(queue, lot) for lot in ("B", "C")]
    queue.gate.release()
    assert (await leader).work_order_id == "A"
    assert await queue.entered.get() == ["B", "C"]  # in a drain task's call now
    for task in list(queue._tasks):
        task.cancel()
    outcomes: list[Any] = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(outcome, InterruptedError) for outcome in outcomes), outcomes
    later = await _submitted(queue, "E")  # the queue still works
    assert await queue.entered.get() == ["E"]
    queue.gate.release()
    assert (await later).work_order_id == "E"
