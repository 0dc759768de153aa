"""Ports of the write use cases: the small interfaces they depend on, implemented outside and injected.

`CommitHooks` is how the ingestor's test-only crash injection (cloud_api/ingestor/faults.py) reaches inside a
transaction without any use case importing ingestor code: the ingestor passes its hooks down; everyone else gets
`NO_HOOKS`. The store protocols for completions and starts are in cloud_api/services/stores.py.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from mes_contracts.envelope import MessageType, Outcome


@dataclass(frozen=True, slots=True)
class Answer:
    """What a use case answers a message or request with: outcome, HTTP status and the JSON body."""

    outcome: Outcome
    http_status: int
    body: dict[str, Any]


class CommitHooks(Protocol):
    async def before_commit(self, message_type: MessageType, message_id: uuid.UUID | None, answer: Answer) -> None:
        """Called inside the transaction, after the work and its stored answer, before COMMIT."""


class _NoHooks:
    async def before_commit(self, message_type: MessageType, message_id: uuid.UUID | None, answer: Answer) -> None:
        return None


NO_HOOKS: CommitHooks = _NoHooks()
