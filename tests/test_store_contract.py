"""One contract suite for the completion and start stores (cloud_api/services/ports.py), run against the in-memory
fake (tests/support/memory_stores.py) and the real PostgreSQL adapters, through the use cases themselves
(services/process_start.start_process, services/process_complete.complete_process): the fake cannot drift."""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from cloud_api.adapters.completion_store import PgCompletionStore
from cloud_api.adapters.database import Database
from cloud_api.adapters.start_sql import PgStartStore
from cloud_api.audit.trail import deferred_audit
from cloud_api.domain.completion import Accepted, CompletionSource, decide_completion
from cloud_api.domain.errors import DomainError
from cloud_api.domain.lots import LotStatus
from cloud_api.domain.start import NewRun
from cloud_api.services.lots import CreateLot, create_lot
from cloud_api.services.ports import CompletionStore, StartStore
from cloud_api.services.process_complete import complete_process
from cloud_api.services.process_start import StartOrigin, start_process
from deploy.localstack.services import PostgresServer
from line_simulator.payloads import completion_record, start_request
from mes_contracts.completion import CompletionRecord
from mes_contracts.errors import ErrorCode
from mes_contracts.numbering import Shift, work_order_prefix
from mes_contracts.start import StartRequest
from tests.support.memory_stores import MemoryCompletionStore, MemoryData, MemoryStartStore

pytestmark = pytest.mark.plain_pg  # issue 14: also run on plain PostgreSQL (test.sh's second pass)

KST = ZoneInfo("Asia/Seoul")
STATION = "KR/L1/st01"
T0 = datetime.now(KST).replace(microsecond=0) - timedelta(hours=1)
WORK_ORDER = re.compile(r"^WO-\d{8}-\d{3,}$")


@dataclass
class Stores:
    completions: CompletionStore
    starts: StartStore


@dataclass
class Backend:
    """One store implementation: how to make a LOT, and a transaction with its stores."""

    db: Database
    new_lot: Callable[[], Any]
    session: Callable[[], AbstractAsyncContextManager[tuple[AsyncConnection | None, Stores]]]


def _memory_backend() -> Backend:
    data = MemoryData(workers={f"W{n:03d}": True for n in range(1, 11)} | {"W999": False})

    async def new_lot() -> str:
        number = f"WF-KR-260105D-{len(data.lots) + 1:03d}"
        data.lots[number] = (next(data.ids), LotStatus.CREATED)
        return number

    @asynccontextmanager
    async def session() -> AsyncIterator[tuple[AsyncConnection | None, Stores]]:
        yield None, Stores(MemoryCompletionStore(data), MemoryStartStore(data))

    return Backend(Database(None, KST), new_lot, session)  # type: ignore[arg-type]  # no engine: never used


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.processes)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        yield _memory_backend()
        return
    postgres: PostgresServer = request.getfixturevalue("postgres")
    engine = create_async_engine(postgres.url, pool_size=2)
    db = Database(engine, KST)

    async def new_lot() -> str:
        async with db.transaction() as conn:
            return str((await create_lot(db, conn, CreateLot(shift=Shift.DAY), "test"))["lot_number"])

    @asynccontextmanager
    async def session() -> AsyncIterator[tuple[AsyncConnection | None, Stores]]:
        async with db.transaction() as conn:
            yield conn, Stores(PgCompletionStore(conn), PgStartStore(conn))

    yield Backend(db, new_lot, session)
    await engine.dispose()


async def _start(backend: Backend, lot: str, process_id: str, worker: str = "W001") -> str:
    request = StartRequest.model_validate(start_request(process_id, lot, worker, T0))
    async with backend.session() as (conn, stores):
        with deferred_audit():
            origin = StartOrigin(STATION, uuid.uuid4())
            # The memory backend has no connection (None): with an explicit store the use case never touches it.
            data = await start_process(backend.db, cast(AsyncConnection, conn), request, origin, stores.starts)
    return data.work_order_id


def _record(lot: str, process_id: str, worker: str = "W001", fail: bool = False) -> CompletionRecord:
    raw = completion_record(process_id, lot, worker, T0, T0 + timedelta(seconds=30), random.Random(1), fail=fail)
    return CompletionRecord.model_validate(raw)


def _source(sha: str | None = None) -> CompletionSource:
    return CompletionSource(STATION, uuid.uuid4(), "f.json", sha)


async def _complete(backend: Backend, record: CompletionRecord, source: CompletionSource) -> dict[str, Any]:
    async with backend.session() as (conn, stores):
        with deferred_audit():
            outcome = await complete_process(
                backend.db, cast(AsyncConnection, conn), record, source, stores.completions
            )
    return {"duplicate": outcome.duplicate, **outcome.data}


async def _refusal(call: Any) -> ErrorCode:
    with pytest.raises(DomainError) as caught:
        await call
    return caught.value.code


async def test_start_numbers_the_run_moves_the_lot_and_refuses_a_second(backend: Backend) -> None:
    lot = await backend.new_lot()
    first = await _start(backend, lot, "PROC-001")
    assert WORK_ORDER.match(first) and first.startswith(work_order_prefix(T0.date()))
    async with backend.session() as (_, stores):
        view = await stores.starts.lock_lot_for_start(lot, "W001")
    assert view is not None and view.status is LotStatus.IN_PROGRESS and view.worker_active
    assert [(r.process_id, r.status, r.work_order_id) for r in view.runs] == [("PROC-001", "STARTED", first)]
    with pytest.raises(DomainError) as duplicate:
        await _start(backend, lot, "PROC-001")
    assert duplicate.value.code is ErrorCode.DUPLICATE_START and duplicate.value.data is not None
    assert duplicate.value.data["work_order_id"] == first
    assert await _refusal(_start(backend, lot, "PROC-002")) is ErrorCode.PREVIOUS_PROCESS_NOT_COMPLETED
    assert await _refusal(_start(backend, lot, "PROC-001", worker="W999")) is ErrorCode.WORKER_NOT_FOUND
    assert await _refusal(_start(backend, "WF-KR-991231N-999", "PROC-001")) is ErrorCode.LOT_NOT_FOUND


async def test_work_order_numbers_count_up_within_a_day(backend: Backend) -> None:
    first = await _start(backend, await backend.new_lot(), "PROC-001")
    second = await _start(backend, await backend.new_lot(), "PROC-001")
    assert int(second.rsplit("-", 1)[1]) > int(first.rsplit("-", 1)[1])


async def test_completion_is_stored_once_and_opens_the_next_process(backend: Backend) -> None:
    lot = await backend.new_lot()
    assert await _refusal(_complete(backend, _record(lot, "PROC-001"), _source())) is ErrorCode.PROCESS_NOT_STARTED
    await _start(backend, lot, "PROC-001")
    sha = uuid.uuid4().hex * 2
    stored = await _complete(backend, _record(lot, "PROC-001", fail=True), _source(sha))
    assert (stored["duplicate"], stored["result"], stored["lot_status"]) == (False, "FAIL", "IN_PROGRESS")
    again = await _complete(backend, _record(lot, "PROC-001"), _source(sha))
    assert (again["duplicate"], again["result"]) == (True, "duplicate")
    assert (
        await _refusal(_complete(backend, _record(lot, "PROC-001", worker="W999"), _source()))
        is ErrorCode.WORKER_NOT_FOUND
    )
    assert (
        await _refusal(_complete(backend, _record("WF-KR-991231N-999", "PROC-001"), _source()))
        is ErrorCode.LOT_NOT_FOUND
    )
    retest = await _complete(backend, _record(lot, "PROC-001"), _source(uuid.uuid4().hex * 2))
    assert retest["result"] == "PASS"
    async with backend.session() as (_, stores):
        view = await stores.starts.lock_lot_for_start(lot, "W001")
    assert view is not None and [(r.process_id, r.status) for r in view.runs] == [("PROC-001", "COMPLETED")]
    assert WORK_ORDER.match(await _start(backend, lot, "PROC-002"))


async def test_write_of_a_batch_returns_result_ids_answers_and_moves_the_lot(backend: Backend) -> None:
    lot = await backend.new_lot()
    await _start(backend, lot, "PROC-001")
    async with backend.session() as (_, stores):  # the last process, inserted directly: the store keeps no rules
        view = await stores.starts.lock_lot_for_start(lot, "W001")
        assert view is not None
        prefix = work_order_prefix(T0.date())
        await stores.starts.insert_run(
            NewRun(view.lot_id, "PROC-008", 8, T0, "W001", None, STATION, T0.date(), prefix), None
        )
    records = [(_record(lot, "PROC-008"), _source(uuid.uuid4().hex * 2))]
    async with backend.session() as (_, stores):
        first = decide_completion(
            records[0][0],
            records[0][1],
            await stores.completions.read_for_completion(lot, "PROC-008", "W001", records[0][1].sha256),
        )
        assert isinstance(first, Accepted) and first.transition == (LotStatus.IN_PROGRESS, LotStatus.COMPLETED)
        written = await stores.completions.write([first])
    assert set(written.result_ids) == {records[0][1].message_id} and written.responses == {}
    async with backend.session() as (_, stores):
        seen = await stores.completions.read_for_completion(lot, "PROC-008", "W001", records[0][1].sha256)
    assert seen is not None and seen.status is LotStatus.COMPLETED and seen.file_seen
