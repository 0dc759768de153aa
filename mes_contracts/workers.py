"""THE worker-id rule: which strings may name a worker (작업자 ID) anywhere in the system.

The spec gives `worker_id` as a required string (examples W001…) and the registry column holds 50 characters.
Worker ids are also the operators' user names (cloud_api/domain/access.py), so one rule serves both: 1–50 ASCII
letters, digits, `_`, `.` or `-`. Every model that carries a worker id (start request, completion record, worker
registry, user names) uses `WorkerId` or `check_worker_id`, so a station, the API and the registry agree on which
ids can exist. Before this module the contracts took any 1–50 characters without control characters while the
registry took only the set above; an id outside it could never be registered, and is now refused as malformed
(INVALID_REQUEST / INVALID_PROCESS_DATA) instead of as unknown (WORKER_NOT_FOUND).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

WORKER_ID_MAX_CHARS = 50
WORKER_ID_PATTERN = rf"^[A-Za-z0-9_.-]{{1,{WORKER_ID_MAX_CHARS}}}$"
_WORKER_ID = re.compile(WORKER_ID_PATTERN)


def is_valid_worker_id(value: str) -> bool:
    return _WORKER_ID.fullmatch(value) is not None


def check_worker_id(value: str) -> str:
    """The value when it is a valid worker id; ValueError (pydantic reports it per field) otherwise."""
    if not is_valid_worker_id(value):
        raise ValueError(f"must be 1–{WORKER_ID_MAX_CHARS} characters of A–Z, a–z, 0–9, '_', '.', '-'")
    return value


# The length as a Field constraint too, so the JSON schema and tests/test_contract_limits.py can read it.
WorkerId = Annotated[str, Field(min_length=1, max_length=WORKER_ID_MAX_CHARS), AfterValidator(check_worker_id)]
