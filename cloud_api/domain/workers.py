"""THE Python side of "this worker may work" (the SQL side is adapters/workers_sql.active_worker).

Which characters a worker id may have is mes_contracts.workers.check_worker_id; whether the worker may start or
complete work is decided here, from the store's answer to `active_worker`.
"""

from __future__ import annotations

from cloud_api.domain.errors import DomainError
from mes_contracts.errors import ErrorCode


def require_active_worker(worker_id: str, active: bool | None) -> None:
    """Refuse work by a worker who is unknown (None/False) or disabled: WORKER_NOT_FOUND (spec §3.4)."""
    if not active:
        raise DomainError(ErrorCode.WORKER_NOT_FOUND, {"worker_id": worker_id})
