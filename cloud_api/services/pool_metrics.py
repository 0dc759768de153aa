"""Database pool use, read from SQLAlchemy's pool when Prometheus scrapes: `mes_db_pool_connections`.

One collector for the whole process, registered once at import (the API and the ingestor are separate processes,
but tests import both): each process tracks its engine under its own `process` label. Nothing is counted on the
request path; the pool already knows its state.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncEngine

STATES = ("in_use", "idle", "overflow")


class PoolCollector(Collector):
    """Sums the pools of the engines tracked under each process label (one engine per process in production)."""

    def __init__(self) -> None:
        self._engines: dict[int, tuple[str, AsyncEngine]] = {}

    def track(self, process: str, engine: AsyncEngine) -> None:
        self._engines[id(engine)] = (process, engine)

    def forget(self, engine: AsyncEngine) -> None:
        self._engines.pop(id(engine), None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        connections = GaugeMetricFamily(
            "mes_db_pool_connections",
            "Database connections of this process's pool by state",
            labels=["process", "state"],
        )
        limit = GaugeMetricFamily(
            "mes_db_pool_max_connections", "Most connections the pool may open (size + overflow)", labels=["process"]
        )
        totals: dict[str, dict[str, float]] = {}
        for process, engine in list(self._engines.values()):
            counts = totals.setdefault(process, dict.fromkeys((*STATES, "max"), 0.0))
            for key, value in _pool_counts(engine.sync_engine.pool).items():
                counts[key] += value
        for process, counts in sorted(totals.items()):
            for state in STATES:
                connections.add_metric([process, state], counts[state])
            limit.add_metric([process], counts["max"])
        yield connections
        yield limit


def _pool_counts(pool: Any) -> dict[str, float]:
    """QueuePool's own counters; a pool without them (NullPool in a tool) reports zeros, never an error."""
    try:
        size = int(pool.size())
        return {
            "in_use": float(pool.checkedout()),
            "idle": float(pool.checkedin()),
            # overflow() counts down from -size while the pool is not full: only a positive value is overflow.
            "overflow": float(max(int(pool.overflow()), 0)),
            "max": float(size + max(int(getattr(pool, "_max_overflow", 0)), 0)),
        }
    except (AttributeError, TypeError):
        return dict.fromkeys((*STATES, "max"), 0.0)


POOLS = PoolCollector()
REGISTRY.register(POOLS)
