"""Cancelling tasks for sure: Python 3.11's `asyncio.wait_for` (used inside aiomqtt) can swallow a cancel."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

logger = logging.getLogger(__name__)

PATIENCE_S = 2.0  # time for clean-up after the first cancel before asking again
RECANCEL_EVERY_S = 0.5


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], grace: float = 5.0) -> set[asyncio.Task[Any]]:
    """Cancel until every task is done (repeating the cancel if one was swallowed); the ones left after `grace`."""
    loop = asyncio.get_running_loop()
    pending = {task for task in tasks if not task.done()}
    deadline = loop.time() + grace
    wait = min(PATIENCE_S, grace)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=wait)
        wait = RECANCEL_EVERY_S
        if pending and loop.time() >= deadline:
            logger.warning(
                "%d task(s) did not stop within %.0f s: %s",
                len(pending),
                grace,
                sorted(task.get_name() for task in pending),
            )
            break
    return pending


def raise_if_cancelled() -> None:
    """Call after an aiomqtt operation: re-raise a cancellation its internal `wait_for` swallowed (Python 3.11)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
