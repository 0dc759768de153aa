"""The API's garbage-collector pauses: the start-up heap frozen out of the collector's scans, and every pause timed.

Why (bench/README.md, Locust section): a full collection of the API process scans everything imported at start
(~200,000 objects: FastAPI, SQLAlchemy, pydantic, the routes), ~0.1 s on the 2-core test host before any request,
more as the heap grows; while it runs the event loop stops, so every request in flight waits, and with a few
hundred users connected the Locust P95 jumped from ~20 ms to 300-400 ms in bursts. `gc.freeze()` after start-up
moves those objects to a permanent generation that collections never scan (the ingestor does the same, mes_cli
`ingest`). `mes_api_gc_pause_seconds{generation}` shows what is left, per generation.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import Histogram

PAUSES = Histogram(
    "mes_api_gc_pause_seconds",
    "Garbage-collector pauses of this API process (the event loop stops meanwhile)",
    ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0),
)
_started: list[float] = []


def _timer(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started.append(time.perf_counter())
    elif _started:
        PAUSES.labels(str(info.get("generation", "?"))).observe(time.perf_counter() - _started.pop())


def track() -> None:
    """Time every collection (a perf_counter call at each start and stop: nothing on the request path)."""
    if _timer not in gc.callbacks:
        gc.callbacks.append(_timer)


def freeze_startup_heap() -> int:
    """Collect once, then keep everything alive so far out of future collections; returns how many objects."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
