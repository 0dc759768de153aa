"""Station ↔ process permissions for tests whose stand-in stations are not the conventional line's stNN."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg


def allow_processes(
    db: psycopg.Connection[Any], station: str, processes: Iterable[str], site: str = "KR", line: str = "L1"
) -> None:
    """Let `station` start and complete `processes` (table station_processes, migration 0007); idempotent.
    The ingestor re-reads the table before it refuses anything, so this takes effect at once."""
    for process_id in processes:
        db.execute(
            "INSERT INTO station_processes (site, line, station, process_id, created_by) "
            "VALUES (%s, %s, %s, %s, 'test') ON CONFLICT DO NOTHING",
            (site, line, station, process_id),
        )
