"""Ports of the write use cases: the small interfaces they depend on, implemented outside and injected.

`CommitHooks` is how the ingestor's test-only crash injection (cloud_api/ingestor/faults.py) reaches inside a
transaction without any use case importing ingestor code: the ingestor passes its hooks down; everyone else gets
`NO_HOOKS`.

`CompletionStore` and `StartStore` are what the completion and start use cases need from storage, as typed rows
(domain dataclasses, no dicts). The PostgreSQL adapters are adapters/completion_store.PgCompletionStore and
adapters/start_sql.PgStartStore; tests/support/memory_stores.py is an in-memory fake, and
tests/test_store_contract.py runs one suite against both so the fake cannot drift.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cloud_api.domain.completion import Accepted, LotForCompletion, StoredAnswer, Written
from cloud_api.domain.start import LotForStart, NewRun, RunRow, Transition
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


class CompletionStore(Protocol):
    """Completions in one transaction: the locked view a decision needs, and the one writer."""

    async def read_for_completion(
        self,
        lot_number: str,
        process_id: str,
        worker_id: str,
        sha256: str | None,
    ) -> LotForCompletion | None:
        """The LOT (locked until commit), its run of the process, whether the worker is active and the file stored."""

    async def write(
        self,
        accepted: Sequence[Accepted],
        answers: Sequence[StoredAnswer] = (),
        audit: str = "[]",
    ) -> Written:
        """Store decided completions (with the answers of a batch's claimed ids and its audit rows)."""


class StartStore(Protocol):
    """The locked start in one transaction (the one-statement fast path is PostgreSQL-only: adapters/start_sql)."""

    async def lock_lot_for_start(self, lot_number: str, worker_id: str) -> LotForStart | None:
        """The LOT (locked until commit), whether the worker is active, and the LOT's runs."""

    async def runs_of_lot(self, lot_id: int) -> tuple[RunRow, ...]:
        """The LOT's runs read afresh."""

    async def insert_run(self, run: NewRun, transition: Transition | None) -> tuple[int, str] | None:
        """(run id, work-order id) with the day's next number, and the LOT's status change; None when the LOT
        already has a run of the process."""
