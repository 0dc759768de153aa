"""Waiting helpers shared by the gateway tests that run a gateway in-process against a broker of their own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.localstack.services import MosquittoServer


async def until(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll `condition` (run in a thread: it may do blocking I/O) until truthy; its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(condition)
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[MosquittoServer]:
    """A Mosquitto of the test's own (the test stops and starts it, or needs it fresh)."""
    server = MosquittoServer(tmp_path / "mosquitto")
    server.start()
    yield server
    server.stop()
