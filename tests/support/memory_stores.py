"""In-memory fakes of the completion and start stores (cloud_api/services/ports.py), for in-process tests.

They keep exactly what the use cases can observe through the protocols; tests/test_store_contract.py runs the
same suite against them and the PostgreSQL adapters, so a difference shows up as a failing test.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from cloud_api.domain.completion import Accepted, LotForCompletion, StoredAnswer, Written
from cloud_api.domain.lots import LotStatus
from cloud_api.domain.start import LotForStart, NewRun, RunRow, Transition


@dataclass
class MemoryRun:
    id: int
    lot_id: int
    row: RunRow
    complete_time: datetime | None = None
    complete_worker_id: str | None = None
    result: str | None = None
    completion_count: int = 0


@dataclass
class MemoryData:
    """The rows both fakes share, as one database would."""

    lots: dict[str, tuple[int, LotStatus]] = field(default_factory=dict)
    runs: dict[int, MemoryRun] = field(default_factory=dict)
    workers: dict[str, bool] = field(default_factory=dict)
    shas: set[str] = field(default_factory=set)
    answers: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    results: list[Accepted] = field(default_factory=list)
    history: list[tuple[int, LotStatus, LotStatus]] = field(default_factory=list)
    work_orders: dict[date, int] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def lot_id(self, lot_number: str) -> int | None:
        found = self.lots.get(lot_number)
        return found[0] if found else None

    def set_status(self, lot_id: int, old: LotStatus, new: LotStatus) -> None:
        for number, (known, _) in self.lots.items():
            if known == lot_id:
                self.lots[number] = (lot_id, new)
        self.history.append((lot_id, old, new))

    def lot_runs(self, lot_id: int) -> list[MemoryRun]:
        return sorted((r for r in self.runs.values() if r.lot_id == lot_id), key=lambda r: r.id)


class MemoryCompletionStore:
    def __init__(self, data: MemoryData) -> None:
        self.data = data

    async def read_for_completion(
        self,
        lot_number: str,
        process_id: str,
        worker_id: str,
        sha256: str | None,
    ) -> LotForCompletion | None:
        found = self.data.lots.get(lot_number)
        if found is None:
            return None
        lot_id, status = found
        run = next((r for r in self.data.lot_runs(lot_id) if r.row.process_id == process_id), None)
        return LotForCompletion(
            lot_id,
            status,
            run.id if run else None,
            self.data.workers.get(worker_id, False),
            sha256 is not None and sha256 in self.data.shas,
        )

    async def write(
        self,
        accepted: Sequence[Accepted],
        answers: Sequence[StoredAnswer] = (),
        audit: str = "[]",
    ) -> Written:
        result_ids: dict[uuid.UUID, int] = {}
        for item in accepted:
            result_ids[item.source.message_id] = next(self.data.ids)
            if item.source.sha256 is not None:
                self.data.shas.add(item.source.sha256)
            self.data.results.append(item)
            run = self.data.runs[item.run_id]
            run.row = replace(run.row, status="COMPLETED")
            run.complete_time = run.complete_time or item.record.complete_time
            run.complete_worker_id = run.complete_worker_id or item.record.worker_id
            run.result, run.completion_count = item.verdict, run.completion_count + 1
            if item.new_status is not None:
                self.data.set_status(item.lot_id, item.status_before, item.new_status)
        for answer in answers:
            self.data.answers[answer.message_id] = answer.body
        return Written(result_ids, {a.message_id: a.body for a in answers})


class MemoryStartStore:
    def __init__(self, data: MemoryData) -> None:
        self.data = data

    async def lock_lot_for_start(self, lot_number: str, worker_id: str) -> LotForStart | None:
        found = self.data.lots.get(lot_number)
        if found is None:
            return None
        lot_id, status = found
        return LotForStart(lot_id, status, self.data.workers.get(worker_id, False), await self.runs_of_lot(lot_id))

    async def runs_of_lot(self, lot_id: int) -> tuple[RunRow, ...]:
        return tuple(r.row for r in sorted(self.data.lot_runs(lot_id), key=lambda r: r.row.process_id))

    async def insert_run(self, run: NewRun, transition: Transition | None) -> tuple[int, str] | None:
        if any(r.row.process_id == run.process_id for r in self.data.lot_runs(run.lot_id)):
            return None
        number = self.data.work_orders.get(run.work_day, 0) + 1
        self.data.work_orders[run.work_day] = number
        work_order_id = f"{run.prefix}{number:03d}"
        run_id = next(self.data.ids)
        self.data.runs[run_id] = MemoryRun(
            run_id, run.lot_id, RunRow(run.process_id, "STARTED", work_order_id, run.start_time)
        )
        if transition is not None:
            self.data.set_status(run.lot_id, transition[0], transition[1])
        return run_id, work_order_id
