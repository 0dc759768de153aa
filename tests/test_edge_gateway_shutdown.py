"""Edge gateway: stopping never hangs, even when a cancel is swallowed (Python 3.11 `asyncio.wait_for`)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from edge_gateway import tasks
from edge_gateway.mover import BatchMover
from edge_gateway.tasks import cancel_and_wait, raise_if_cancelled


async def test_a_swallowed_cancel_is_repeated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks, "PATIENCE_S", 0.05)
    monkeypatch.setattr(tasks, "RECANCEL_EVERY_S", 0.05)
    swallowed = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            swallowed.set()  # what wait_for does when the inner future finished at the same moment
        await asyncio.sleep(10)

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    assert await cancel_and_wait([task], grace=2) == set()
    assert swallowed.is_set() and task.cancelled()


async def test_gives_up_after_the_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks, "PATIENCE_S", 0.05)
    monkeypatch.setattr(tasks, "RECANCEL_EVERY_S", 0.05)

    stubborn = True

    async def immortal() -> None:
        while stubborn:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(10)

    task = asyncio.create_task(immortal(), name="immortal")
    await asyncio.sleep(0)
    assert await cancel_and_wait([task], grace=0.2) == {task}
    stubborn = False
    task.cancel()
    await asyncio.wait([task], timeout=1)
    assert task.done()


async def test_raise_if_cancelled_restores_a_swallowed_cancel() -> None:
    reached = asyncio.Event()

    async def body() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(10)
        raise_if_cancelled()
        reached.set()

    task = asyncio.create_task(body())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not reached.is_set()


async def test_mover_stopping_releases_its_waiters(tmp_path: Path) -> None:
    mover = BatchMover(tmp_path / "completed", tmp_path / "error", tick=10)
    runner = asyncio.create_task(mover.run())
    await asyncio.sleep(0)  # the mover is up and idle
    first = asyncio.create_task(mover.move(tmp_path / "pending" / "first.json", None))
    with pytest.raises(FileNotFoundError):
        await asyncio.wait_for(first, 5)  # one batch done; the mover now waits out its tick
    waiter = asyncio.create_task(mover.move(tmp_path / "pending" / "x.json", None))
    await asyncio.sleep(0)  # queued behind the tick
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    await asyncio.wait([waiter], timeout=1)
    assert waiter.cancelled()


async def test_mover_reports_each_files_own_outcome(tmp_path: Path) -> None:
    for name in ("pending", "completed", "error"):
        (tmp_path / name).mkdir()
    (tmp_path / "pending" / "a.json").write_bytes(b"{}")
    mover = BatchMover(tmp_path / "completed", tmp_path / "error", tick=0)
    runner = asyncio.create_task(mover.run())
    try:
        moved, missing = await asyncio.gather(
            mover.move(tmp_path / "pending" / "a.json", None),
            mover.move(tmp_path / "pending" / "gone.json", None),
            return_exceptions=True,
        )
    finally:
        runner.cancel()
    assert moved == tmp_path / "completed" / "a.json"
    assert isinstance(missing, FileNotFoundError)
