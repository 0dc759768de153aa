"""Runs the moves of finished files in a worker thread in batches: one thread hop per tick, not per file."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from edge_gateway.dispositions import DuplicateReport, ErrorReport, move_to_completed, move_to_error
from edge_gateway.pending_io import NotRegular, sha256_of

BATCH_TICK_S = 0.02


class ContentChanged(Exception):
    """The file under this name is not the one that was sent (rewritten meanwhile): it is left where it is."""


@dataclass(frozen=True, slots=True)
class MoveOrder:
    source: Path
    report: ErrorReport | None  # None: to completed/
    sha256: str | None = None  # when given, move only a file with exactly this content
    duplicate: DuplicateReport | None = None  # to completed/ with a `.duplicate.log` beside it


MoveResult = Path | OSError | ContentChanged


@dataclass(slots=True)
class _Job:
    """The orders of one caller (one file, or every file of one answered message) and its one future."""

    orders: list[MoveOrder]
    done: asyncio.Future[list[MoveResult]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


def _content_of(source: Path) -> str | None:
    """Streamed SHA-256; None for a name that is no longer a regular file (never read through a symlink)."""
    try:
        return sha256_of(source)
    except NotRegular:
        return None


def _execute(orders: list[MoveOrder], completed_dir: Path, error_dir: Path) -> list[MoveResult]:
    results: list[MoveResult] = []
    for order in orders:
        try:
            if order.sha256 is not None and _content_of(order.source) != order.sha256:
                raise ContentChanged(f"{order.source.name} changed since it was sent")
            if order.report is None:
                results.append(move_to_completed(order.source, completed_dir, order.duplicate))
            else:
                results.append(move_to_error(order.source, error_dir, order.report))
        except (OSError, ContentChanged) as error:
            results.append(error)
    return results


class BatchMover:
    """`await move(...)` returns the stored path or raises that file's OSError (or ContentChanged);
    `await move_many(...)` returns each order's path or error, in order, for one future instead of one per file."""

    def __init__(self, completed_dir: Path, error_dir: Path, tick: float = BATCH_TICK_S) -> None:
        self._completed_dir = completed_dir
        self._error_dir = error_dir
        self._tick = tick
        self._jobs: list[_Job] = []
        self._ready = asyncio.Event()

    async def move(
        self,
        source: Path,
        report: ErrorReport | None,
        sha256: str | None = None,
        duplicate: DuplicateReport | None = None,
    ) -> Path:
        (result,) = await self.move_many([MoveOrder(source, report, sha256, duplicate)])
        if isinstance(result, Exception):
            raise result
        return result

    async def move_many(self, orders: list[MoveOrder]) -> list[MoveResult]:
        if not orders:
            return []
        job = _Job(orders)
        self._jobs.append(job)
        self._ready.set()
        return await job.done

    async def run(self) -> None:
        batch: list[_Job] = []
        try:
            while True:
                await self._ready.wait()
                self._ready.clear()
                batch, self._jobs = self._jobs, []
                if not batch:
                    continue
                orders = [order for job in batch for order in job.orders]
                results = await asyncio.to_thread(_execute, orders, self._completed_dir, self._error_dir)
                start = 0
                for job in batch:
                    end = start + len(job.orders)
                    if not job.done.done():
                        job.done.set_result(results[start:end])
                    start = end
                batch = []
                await asyncio.sleep(self._tick)  # let the next finished files gather into one batch
        finally:
            for job in (*batch, *self._jobs):  # nobody is left to answer these waiters
                job.done.cancel()
            self._jobs = []
