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


@dataclass(slots=True)
class _Order:
    source: Path
    report: ErrorReport | None  # None: to completed/
    sha256: str | None = None  # when given, move only a file with exactly this content
    duplicate: DuplicateReport | None = None  # to completed/ with a `.duplicate.log` beside it
    done: asyncio.Future[Path] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


def _content_of(source: Path) -> str | None:
    """Streamed SHA-256; None for a name that is no longer a regular file (never read through a symlink)."""
    try:
        return sha256_of(source)
    except NotRegular:
        return None


def _execute(orders: list[_Order], completed_dir: Path, error_dir: Path) -> list[Path | Exception]:
    results: list[Path | Exception] = []
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
    """`await move(...)` returns the stored path or raises that file's OSError (or ContentChanged)."""

    def __init__(self, completed_dir: Path, error_dir: Path, tick: float = BATCH_TICK_S) -> None:
        self._completed_dir = completed_dir
        self._error_dir = error_dir
        self._tick = tick
        self._orders: list[_Order] = []
        self._ready = asyncio.Event()

    async def move(
        self,
        source: Path,
        report: ErrorReport | None,
        sha256: str | None = None,
        duplicate: DuplicateReport | None = None,
    ) -> Path:
        order = _Order(source, report, sha256, duplicate)
        self._orders.append(order)
        self._ready.set()
        return await order.done

    async def run(self) -> None:
        batch: list[_Order] = []
        try:
            while True:
                await self._ready.wait()
                self._ready.clear()
                batch, self._orders = self._orders, []
                if not batch:
                    continue
                results = await asyncio.to_thread(_execute, batch, self._completed_dir, self._error_dir)
                for order, result in zip(batch, results, strict=True):
                    if order.done.done():
                        continue
                    if isinstance(result, Exception):
                        order.done.set_exception(result)
                    else:
                        order.done.set_result(result)
                batch = []
                await asyncio.sleep(self._tick)  # let the next finished files gather into one batch
        finally:
            for order in (*batch, *self._orders):  # nobody is left to answer these waiters
                order.done.cancel()
            self._orders = []
