"""THE SQL spelling of "this worker may work": an active operator (spec: WORKER_NOT_FOUND otherwise).

Source of truth: the `users` table. `workers` is a view of its operator rows (migration 0003), kept as the name
the start, completion and label code read, and written through by services/workers.py. Every statement that
asks whether a worker is active embeds `active_worker(...)`; the Python side of the same rule is
cloud_api/domain/workers.py.
"""

from __future__ import annotations


def active_worker(worker_id_sql: str) -> str:
    """A boolean SQL expression: `worker_id_sql` (a bind parameter or a column) names an active operator."""
    return f"EXISTS (SELECT 1 FROM workers w WHERE w.worker_id = {worker_id_sql} AND w.active)"
